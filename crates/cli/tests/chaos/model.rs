//! The sequential models the chaos history is checked against: a register with compare-and-set
//! (one row of a table) and an append-only list (rows of a table read in insertion order).

use crate::checker::Model;

/// An operation on a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegOp {
    /// Set the value.
    Write(i64),
    /// Set the value to `to` if it is `from`.
    Cas {
        /// The value expected.
        from: i64,
        /// The new value.
        to: i64,
    },
    /// Read the value.
    Read,
}

/// What a register operation answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegOut {
    /// A write was applied.
    Ok,
    /// Whether a compare-and-set applied.
    Cas(bool),
    /// The value read.
    Read(i64),
}

/// A register holding an integer, `init` at first.
#[derive(Debug, Clone, Copy)]
pub struct RegisterModel {
    /// The value before any write.
    pub init: i64,
}

impl Model for RegisterModel {
    type State = i64;
    type Input = RegOp;
    type Output = RegOut;

    fn init(&self) -> i64 {
        self.init
    }

    fn step(&self, s: &i64, input: &RegOp, output: Option<&RegOut>) -> Option<i64> {
        match (input, output) {
            (RegOp::Write(v), None | Some(RegOut::Ok)) => Some(*v),
            (RegOp::Cas { from, to }, None) => Some(if s == from { *to } else { *s }),
            (RegOp::Cas { from, to }, Some(RegOut::Cas(true))) => (s == from).then_some(*to),
            (RegOp::Cas { from, .. }, Some(RegOut::Cas(false))) => (s != from).then_some(*s),
            (RegOp::Read, None) => Some(*s),
            (RegOp::Read, Some(RegOut::Read(v))) => (s == v).then_some(*s),
            _ => None,
        }
    }
}

/// An operation on an append-only list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListOp {
    /// Append a value.
    Append(i64),
    /// Read the whole list.
    Read,
}

/// What a list operation answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListOut {
    /// An append was applied.
    Ok,
    /// The whole list, in append order.
    Read(Vec<i64>),
}

/// A list that only grows, empty at first.
#[derive(Debug, Clone, Copy)]
pub struct ListModel;

impl Model for ListModel {
    type State = Vec<i64>;
    type Input = ListOp;
    type Output = ListOut;

    fn init(&self) -> Vec<i64> {
        Vec::new()
    }

    fn step(&self, s: &Vec<i64>, input: &ListOp, output: Option<&ListOut>) -> Option<Vec<i64>> {
        match (input, output) {
            (ListOp::Append(v), None | Some(ListOut::Ok)) => {
                let mut next = s.clone();
                next.push(*v);
                Some(next)
            }
            (ListOp::Read, None) => Some(s.clone()),
            (ListOp::Read, Some(ListOut::Read(seen))) => (seen == s).then(|| s.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::checker::Operation;
    use crate::rng::Rng;

    /// A history of `n` operations by `clients` concurrent clients on one register, made by
    /// a real sequential register: each operation takes effect at a random instant between
    /// its call and its return, so the history is linearizable. About 1% of the writes get
    /// an unknown outcome (some of them applied, some never). Returns the history and the
    /// index of one read with a known output.
    pub fn generated_register_history(
        n: usize,
        clients: usize,
        seed: u64,
    ) -> (Vec<Operation<RegOp, RegOut>>, usize) {
        let mut rng = Rng::new(seed);
        // (effect time, op index, applied)
        let mut ops: Vec<Operation<RegOp, RegOut>> = Vec::new();
        let mut effects: Vec<(u64, usize, bool)> = Vec::new();
        let mut clock = vec![0u64; clients];
        let mut next_value = 1;
        for _ in 0..n {
            let c = rng.below(clients as u64) as usize;
            let call = clock[c] + rng.below(50);
            let ret = call + 1 + rng.below(200);
            clock[c] = ret;
            let effect = call + rng.below(ret - call + 1);
            let input = match rng.below(10) {
                0..=3 => {
                    next_value += 1;
                    RegOp::Write(next_value)
                }
                4 => {
                    next_value += 1;
                    RegOp::Cas {
                        from: next_value - 1 - rng.below(3) as i64,
                        to: next_value,
                    }
                }
                _ => RegOp::Read,
            };
            let unknown = !matches!(input, RegOp::Read) && rng.chance(0.01);
            // An unknown write applies late (after its client gave up) or never.
            let (effect, applied) = if unknown {
                (ret + rng.below(2000), rng.chance(0.5))
            } else {
                (effect, true)
            };
            effects.push((effect, ops.len(), applied));
            ops.push(Operation {
                call,
                ret: (!unknown).then_some(ret),
                input,
                output: None,
            });
        }
        effects.sort_unstable();
        let mut reg = 0;
        for (_, i, applied) in effects {
            if !applied {
                continue;
            }
            let out = match ops[i].input {
                RegOp::Write(v) => {
                    reg = v;
                    RegOut::Ok
                }
                RegOp::Cas { from, to } => {
                    let ok = reg == from;
                    if ok {
                        reg = to;
                    }
                    RegOut::Cas(ok)
                }
                RegOp::Read => RegOut::Read(reg),
            };
            if ops[i].ret.is_some() {
                ops[i].output = Some(out);
            }
        }
        let victim = ops
            .iter()
            .position(|o| o.input == RegOp::Read && o.output.is_some())
            .expect("a read");
        (ops, victim)
    }

    #[test]
    fn register_steps() {
        let m = RegisterModel { init: 0 };
        assert_eq!(m.step(&0, &RegOp::Write(3), Some(&RegOut::Ok)), Some(3));
        assert_eq!(m.step(&0, &RegOp::Write(3), Some(&RegOut::Read(3))), None);
        assert_eq!(
            m.step(&0, &RegOp::Cas { from: 0, to: 4 }, Some(&RegOut::Cas(true))),
            Some(4)
        );
        assert_eq!(
            m.step(&1, &RegOp::Cas { from: 0, to: 4 }, Some(&RegOut::Cas(true))),
            None
        );
        assert_eq!(m.step(&1, &RegOp::Cas { from: 0, to: 4 }, None), Some(1));
        assert_eq!(m.step(&2, &RegOp::Read, Some(&RegOut::Read(2))), Some(2));
        assert_eq!(m.step(&2, &RegOp::Read, Some(&RegOut::Read(1))), None);
    }

    #[test]
    fn list_steps() {
        let m = ListModel;
        assert_eq!(
            m.step(&vec![1], &ListOp::Append(2), Some(&ListOut::Ok)),
            Some(vec![1, 2])
        );
        assert_eq!(
            m.step(&vec![1, 2], &ListOp::Read, Some(&ListOut::Read(vec![1, 2]))),
            Some(vec![1, 2])
        );
        assert_eq!(
            m.step(&vec![1, 2], &ListOp::Read, Some(&ListOut::Read(vec![2, 1]))),
            None
        );
    }
}
