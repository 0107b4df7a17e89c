//! A linearizability checker: the Wing–Gong search as improved by Lowe (WGL), with the
//! memoization Porcupine uses, for any sequential [`Model`].
//!
//! A history is a set of [`Operation`]s, each with the time it was invoked and the time its
//! answer came back. It is linearizable when every operation can be given a single instant
//! between those two times such that, taken in the order of those instants, the operations
//! are a run of the sequential model that gives the outputs the clients saw.
//!
//! An operation whose outcome is unknown (a timeout, a reset connection, a "may have been
//! applied" answer) has no return time (`ret: None`, treated as +∞) and no output: it may
//! take effect at any instant after its call, or never (placed after everything else), as in
//! Jepsen's model of indeterminate operations.
//!
//! The search is a depth-first search over configurations (the set of operations linearized
//! so far, the model state). From a configuration, the candidates for the next linearization
//! point are the pending operations invoked before the earliest return of a pending
//! operation (Wing & Gong); the call and return events are kept in a doubly linked list
//! from which linearized operations are unlinked, so that set is found in time proportional
//! to the concurrency (Lowe). Explored configurations are remembered and not explored again
//! (Lowe, Porcupine), which makes the search fast on real histories.
//!
//! Operations with an unknown outcome get one more rule, without which every subset of them
//! would be explored: a configuration is skipped when an explored one had the same state,
//! the same operations of known outcome, and a subset of its unknown ones. That is sound
//! because an unknown operation never constrains anything (its return is at +∞) and can
//! always be linearized last (its output is unknown, so [`Model::step`] accepts it), so
//! having linearized fewer of them leaves at least as many ways to finish. Known-outcome
//! candidates are tried first, so the smaller subsets are explored first. The search
//! succeeds as soon as every operation of known outcome is linearized.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

/// A sequential specification: the object the history is checked against.
pub trait Model {
    /// The object's state; two equal states must behave the same for every later operation.
    type State: Clone + Eq + Hash + Debug;
    /// What an operation asks for.
    type Input: Debug;
    /// What an operation answered.
    type Output: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`: the new state if `output` is what the object would have
    /// answered, `None` if that is impossible. With `output` `None` (unknown) any answer is
    /// fine, and the step must succeed from every state.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history. Times are in any unit that is the same for every operation
/// of the history (the chaos test uses nanoseconds since its start).
#[derive(Debug, Clone, PartialEq)]
pub struct Operation<I, O> {
    /// When the client invoked it.
    pub call: u64,
    /// When its answer came back; `None` when the outcome is unknown (+∞).
    pub ret: Option<u64>,
    /// What it asked for.
    pub input: I,
    /// What it answered; `None` when unknown (a known return time with an unknown output
    /// is allowed: an unknown write that some read observed took effect before that read
    /// returned).
    pub output: Option<O>,
}

/// The checker's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable {
        /// Search steps taken.
        steps: u64,
    },
    /// No linearization exists.
    NotLinearizable {
        /// The longest partial linearization the search found: operation indices in order.
        longest: Vec<usize>,
    },
    /// The search exceeded its step budget before deciding.
    GaveUp {
        /// Search steps taken.
        steps: u64,
    },
}

/// One bit per operation.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn is_subset_of(&self, other: &Bits) -> bool {
        self.0.iter().zip(&other.0).all(|(a, b)| a & !b == 0)
    }
}

const NIL: usize = usize::MAX;

/// The call and return events of the operations with a return time, as a doubly linked
/// list (node 0 is the head sentinel, node `j + 1` is event `j`), so that linearizing an
/// operation unlinks its two events in O(1) and backtracking relinks them (Knuth's
/// dancing links).
struct Events {
    /// `(time, is_return, operation)` of each node; node 0 unused.
    kind: Vec<(u64, bool, usize)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Node of each operation's call and return (0 for operations not in the list).
    call_node: Vec<usize>,
    ret_node: Vec<usize>,
}

impl Events {
    fn new<I, O>(ops: &[Operation<I, O>]) -> Events {
        // At equal times calls come first, so two operations that touch at one instant
        // count as concurrent.
        let mut ev: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            if let Some(ret) = op.ret {
                assert!(
                    ret >= op.call,
                    "operation {i} returns ({ret}) before it is called ({})",
                    op.call
                );
                ev.push((op.call, false, i));
                ev.push((ret, true, i));
            }
        }
        ev.sort_unstable();
        let m = ev.len();
        let mut e = Events {
            kind: vec![(0, false, 0); m + 1],
            next: vec![NIL; m + 1],
            prev: vec![NIL; m + 1],
            call_node: vec![0; ops.len()],
            ret_node: vec![0; ops.len()],
        };
        for (j, &(time, is_ret, op)) in ev.iter().enumerate() {
            let node = j + 1;
            e.kind[node] = (time, is_ret, op);
            e.prev[node] = j;
            e.next[j] = node;
            if is_ret {
                e.ret_node[op] = node;
            } else {
                e.call_node[op] = node;
            }
        }
        e
    }

    fn unlink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = x;
        if x != NIL {
            self.prev[x] = p;
        }
    }

    fn relink(&mut self, n: usize) {
        let (p, x) = (self.prev[n], self.next[n]);
        self.next[p] = n;
        if x != NIL {
            self.prev[x] = n;
        }
    }

    /// Takes operation `op` (its call and its return) out of the list.
    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        self.unlink(self.ret_node[op]);
    }

    /// Puts operation `op` back, undoing [`Events::lift`] (reverse order).
    fn unlift(&mut self, op: usize) {
        self.relink(self.ret_node[op]);
        self.relink(self.call_node[op]);
    }

    /// The pending operations invoked before the first pending return, in time order, and
    /// the time of that return (`u64::MAX` when the list is empty).
    fn candidates(&self, out: &mut Vec<usize>) -> u64 {
        let mut cur = self.next[0];
        while cur != NIL {
            let (time, is_ret, op) = self.kind[cur];
            if is_ret {
                return time;
            }
            out.push(op);
            cur = self.next[cur];
        }
        u64::MAX
    }
}

/// A step of the depth-first search: the candidates of a configuration, the next one to
/// try, and the operation whose linearization led here with the state before it.
struct Frame<S> {
    candidates: Vec<usize>,
    next: usize,
    came_by: Option<(usize, S)>,
}

/// Decides whether `ops` is linearizable with respect to `model`, taking at most
/// `max_steps` search steps (one step = one candidate tried).
///
/// # Panics
///
/// If an operation returns before it is called.
pub fn check<M: Model>(
    model: &M,
    ops: &[Operation<M::Input, M::Output>],
    max_steps: u64,
) -> Verdict {
    let mut events = Events::new(ops);
    // Operations of unknown outcome, by call time.
    let mut open: Vec<usize> = (0..ops.len()).filter(|&i| ops[i].ret.is_none()).collect();
    open.sort_by_key(|&i| ops[i].call);
    let mut known_left = ops.len() - open.len();
    let mut known = Bits::new(ops.len());
    let mut unknown = Bits::new(ops.len());
    // (known operations linearized, state) -> the sets of unknown ones it was explored with.
    let mut seen: HashMap<(Bits, M::State), Vec<Bits>> = HashMap::new();
    let mut state = model.init();
    let mut longest: Vec<usize> = Vec::new();
    let mut path: Vec<usize> = Vec::new();
    let mut steps = 0u64;

    let candidates = |events: &Events, unknown: &Bits| {
        let mut c = Vec::new();
        let horizon = events.candidates(&mut c);
        c.extend(
            open.iter()
                .take_while(|&&i| ops[i].call <= horizon)
                .filter(|&&i| !unknown.get(i)),
        );
        c
    };
    let mut stack: Vec<Frame<M::State>> = vec![Frame {
        candidates: candidates(&events, &unknown),
        next: 0,
        came_by: None,
    }];
    loop {
        if known_left == 0 {
            return Verdict::Linearizable { steps };
        }
        let Some(top) = stack.last_mut() else {
            return Verdict::NotLinearizable { longest };
        };
        let Some(&op) = top.candidates.get(top.next) else {
            // Every candidate of this configuration failed: undo the step that led here.
            let frame = stack.pop().expect("the stack is not empty");
            if let Some((op, before)) = frame.came_by {
                state = before;
                path.pop();
                if ops[op].ret.is_some() {
                    known.clear(op);
                    events.unlift(op);
                    known_left += 1;
                } else {
                    unknown.clear(op);
                }
            }
            continue;
        };
        top.next += 1;
        steps += 1;
        if steps > max_steps {
            return Verdict::GaveUp { steps };
        }
        let o = &ops[op];
        let Some(after) = model.step(&state, &o.input, o.output.as_ref()) else {
            continue;
        };
        let is_known = o.ret.is_some();
        if is_known {
            known.set(op);
        } else {
            unknown.set(op);
        }
        let explored = seen.entry((known.clone(), after.clone())).or_default();
        if explored.iter().any(|u| u.is_subset_of(&unknown)) {
            if is_known {
                known.clear(op);
            } else {
                unknown.clear(op);
            }
            continue;
        }
        explored.push(unknown.clone());
        if is_known {
            events.lift(op);
            known_left -= 1;
        }
        path.push(op);
        if path.len() > longest.len() {
            longest = path.clone();
        }
        let before = std::mem::replace(&mut state, after);
        stack.push(Frame {
            candidates: candidates(&events, &unknown),
            next: 0,
            came_by: Some((op, before)),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ListModel, ListOp, ListOut, RegOp, RegOut, RegisterModel};

    fn op<I, O>(call: u64, ret: u64, input: I, output: O) -> Operation<I, O> {
        Operation {
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    fn unknown<I, O>(call: u64, input: I) -> Operation<I, O> {
        Operation {
            call,
            ret: None,
            input,
            output: None,
        }
    }

    fn is_lin<M: Model>(m: &M, ops: &[Operation<M::Input, M::Output>]) -> bool {
        match check(m, ops, 10_000_000) {
            Verdict::Linearizable { .. } => true,
            Verdict::NotLinearizable { .. } => false,
            Verdict::GaveUp { steps } => panic!("gave up after {steps} steps"),
        }
    }

    const R: RegisterModel = RegisterModel { init: 0 };

    #[test]
    fn empty_history_is_linearizable() {
        assert!(is_lin(&R, &[]));
    }

    #[test]
    fn register_sequential_and_concurrent_histories() {
        // w(1) then r -> 1.
        assert!(is_lin(
            &R,
            &[
                op(0, 10, RegOp::Write(1), RegOut::Ok),
                op(20, 30, RegOp::Read, RegOut::Read(1)),
            ]
        ));
        // A read concurrent with a write may see either value; two such reads may see
        // old then new, Porcupine's README example.
        assert!(is_lin(
            &R,
            &[
                op(0, 100, RegOp::Write(100), RegOut::Ok),
                op(10, 40, RegOp::Read, RegOut::Read(0)),
                op(50, 90, RegOp::Read, RegOut::Read(100)),
            ]
        ));
    }

    #[test]
    fn register_stale_read_after_a_completed_write_is_rejected() {
        // The write finished before the read began: the read must see it.
        let h = [
            op(0, 10, RegOp::Write(1), RegOut::Ok),
            op(20, 30, RegOp::Read, RegOut::Read(0)),
        ];
        assert!(matches!(
            check(&R, &h, 1000),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn register_new_then_old_read_is_rejected() {
        // Reads concurrent with a write, but the later read (which starts after the first
        // one returned) sees the older value: not linearizable (it is sequentially
        // consistent per client, which is why a real checker is needed).
        let h = [
            op(0, 100, RegOp::Write(1), RegOut::Ok),
            op(10, 20, RegOp::Read, RegOut::Read(1)),
            op(30, 40, RegOp::Read, RegOut::Read(0)),
        ];
        assert!(!is_lin(&R, &h));
    }

    #[test]
    fn register_read_of_a_value_never_written_is_rejected() {
        let h = [
            op(0, 10, RegOp::Write(1), RegOut::Ok),
            op(5, 15, RegOp::Read, RegOut::Read(7)),
        ];
        assert!(!is_lin(&R, &h));
    }

    #[test]
    fn cas_results_are_checked() {
        // Two CAS from 0 overlapping: only one may succeed.
        let both = [
            op(0, 10, RegOp::Cas { from: 0, to: 1 }, RegOut::Cas(true)),
            op(2, 12, RegOp::Cas { from: 0, to: 2 }, RegOut::Cas(true)),
        ];
        assert!(!is_lin(&R, &both));
        let one = [
            op(0, 10, RegOp::Cas { from: 0, to: 1 }, RegOut::Cas(true)),
            op(2, 12, RegOp::Cas { from: 0, to: 2 }, RegOut::Cas(false)),
            op(20, 30, RegOp::Read, RegOut::Read(1)),
        ];
        assert!(is_lin(&R, &one));
        // A CAS that failed although the value it expected was there, alone: rejected.
        let failed = [op(0, 10, RegOp::Cas { from: 0, to: 1 }, RegOut::Cas(false))];
        assert!(!is_lin(&R, &failed));
    }

    #[test]
    fn unknown_outcomes_may_apply_late_or_never() {
        // A timed-out write may never happen...
        assert!(is_lin(
            &R,
            &[
                unknown(0, RegOp::Write(1)),
                op(100, 110, RegOp::Read, RegOut::Read(0)),
            ]
        ));
        // ...or take effect long after its client gave up.
        assert!(is_lin(
            &R,
            &[
                unknown(0, RegOp::Write(1)),
                op(100, 110, RegOp::Read, RegOut::Read(0)),
                op(200, 210, RegOp::Read, RegOut::Read(1)),
            ]
        ));
        // ...but once seen it cannot be unseen.
        assert!(!is_lin(
            &R,
            &[
                unknown(0, RegOp::Write(1)),
                op(100, 110, RegOp::Read, RegOut::Read(1)),
                op(200, 210, RegOp::Read, RegOut::Read(0)),
            ]
        ));
        // And it cannot take effect before it was sent.
        assert!(!is_lin(
            &R,
            &[
                op(0, 10, RegOp::Read, RegOut::Read(1)),
                unknown(20, RegOp::Write(1)),
            ]
        ));
        // An unknown CAS that explains a later failed CAS.
        assert!(is_lin(
            &R,
            &[
                unknown(0, RegOp::Cas { from: 0, to: 5 }),
                op(20, 30, RegOp::Cas { from: 0, to: 6 }, RegOut::Cas(false)),
            ]
        ));
    }

    #[test]
    fn list_histories() {
        let l = ListModel;
        // Appends concurrent with each other may land in either order; reads see a prefix
        // that grows.
        assert!(is_lin(
            &l,
            &[
                op(0, 50, ListOp::Append(1), ListOut::Ok),
                op(0, 50, ListOp::Append(2), ListOut::Ok),
                op(10, 20, ListOp::Read, ListOut::Read(vec![2])),
                op(60, 70, ListOp::Read, ListOut::Read(vec![2, 1])),
            ]
        ));
        // A lost acknowledged append.
        assert!(!is_lin(
            &l,
            &[
                op(0, 10, ListOp::Append(1), ListOut::Ok),
                op(20, 30, ListOp::Read, ListOut::Read(vec![])),
            ]
        ));
        // Two reads that disagree on the order.
        assert!(!is_lin(
            &l,
            &[
                op(0, 50, ListOp::Append(1), ListOut::Ok),
                op(0, 50, ListOp::Append(2), ListOut::Ok),
                op(60, 70, ListOp::Read, ListOut::Read(vec![1, 2])),
                op(80, 90, ListOp::Read, ListOut::Read(vec![2, 1])),
            ]
        ));
        // An append applied twice.
        assert!(!is_lin(
            &l,
            &[
                op(0, 10, ListOp::Append(1), ListOut::Ok),
                op(20, 30, ListOp::Read, ListOut::Read(vec![1, 1])),
            ]
        ));
    }

    #[test]
    fn the_longest_partial_linearization_is_reported() {
        let h = [
            op(0, 10, RegOp::Write(1), RegOut::Ok),
            op(20, 30, RegOp::Write(2), RegOut::Ok),
            op(40, 50, RegOp::Read, RegOut::Read(1)),
        ];
        assert_eq!(
            check(&R, &h, 1000),
            Verdict::NotLinearizable {
                longest: vec![0, 1]
            }
        );
    }

    #[test]
    fn the_step_budget_is_honoured() {
        let h: Vec<_> = (0..50)
            .map(|i| op(i, 1000, RegOp::Write(i as i64), RegOut::Ok))
            .collect();
        assert!(matches!(check(&R, &h, 10), Verdict::GaveUp { .. }));
    }

    /// Histories of many concurrent clients produced by a real sequential register (so they
    /// are linearizable), with some unknown outcomes, are accepted quickly thanks to
    /// memoization. Making one read stale (it returns a value that a later completed write
    /// had replaced before the read began) is caught. Proving that no linearization exists
    /// means exhausting the search, so the bad histories are of the size of one key's
    /// history in the chaos run (a few hundred operations).
    #[test]
    fn generated_histories_are_accepted_and_a_stale_read_is_caught() {
        for seed in 1..=5 {
            let (h, _) = crate::model::tests::generated_register_history(2000, 5, seed);
            assert!(h.iter().any(|o| o.ret.is_none()), "some unknown outcomes");
            assert!(
                matches!(check(&R, &h, 2_000_000), Verdict::Linearizable { .. }),
                "seed {seed}: a generated history must be linearizable"
            );

            let (mut bad, _) = crate::model::tests::generated_register_history(300, 5, seed);
            let (read, stale) = stale_read(&bad).expect("a read that can be made stale");
            bad[read].output = Some(RegOut::Read(stale));
            assert!(
                !is_lin(&R, &bad),
                "seed {seed}: the stale read went unnoticed"
            );
        }
    }

    /// A read R and a value `a` such that `Write(a)` completed, then a write of another value
    /// was invoked and completed, all before R was invoked.
    fn stale_read(h: &[Operation<RegOp, RegOut>]) -> Option<(usize, i64)> {
        let writes: Vec<(u64, u64, i64)> = h
            .iter()
            .filter_map(|o| match (o.input, o.ret, &o.output) {
                (RegOp::Write(v), Some(ret), Some(RegOut::Ok)) => Some((o.call, ret, v)),
                _ => None,
            })
            .collect();
        h.iter().enumerate().rev().find_map(|(i, r)| {
            let (RegOp::Read, Some(RegOut::Read(now))) = (r.input, &r.output) else {
                return None;
            };
            writes.iter().find_map(|&(_, ret1, a)| {
                let overwritten = writes
                    .iter()
                    .any(|&(call2, ret2, b)| b != a && call2 > ret1 && ret2 < r.call);
                (overwritten && a != *now && ret1 < r.call).then_some((i, a))
            })
        })
    }
}
