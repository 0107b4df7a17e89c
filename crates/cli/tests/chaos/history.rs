//! What the chaos clients record, and how it becomes one checkable history per key.
//!
//! Each key (a register row or a list) is checked on its own: linearizability is local
//! (Herlihy & Wing), so a history is linearizable iff each key's sub-history is; this is
//! Porcupine's P-compositionality and keeps each search small.
//!
//! Operations with an unknown outcome are possibly applied, with a return time of +∞. Two
//! rewrites keep them cheap without changing the verdict (values written are unique, so an
//! observed value names the one operation that wrote it):
//! - an unknown write whose value some operation observed must have taken effect before that
//!   observer returned: its return time becomes the earliest such return;
//! - an unknown write nobody observed is dropped when nothing could have noticed it: for a
//!   list, a read sees every earlier append, so an append no read contains took effect after
//!   every read or never; for a register, only a compare-and-set that failed (or may have)
//!   could have been affected, so the write is dropped when no such compare-and-set was
//!   pending at or after its call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use crate::checker::Operation;
use crate::model::{ListOp, ListOut, RegOp, RegOut};

/// What an operation works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Register number `k` (row `k` of table `regs`).
    Reg(u32),
    /// List number `l` (the rows of table `list` with `l = l`).
    List(u32),
}

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `UPDATE regs SET v = ? WHERE k = ?`
    Write(i64),
    /// `UPDATE regs SET v = to WHERE k = ? AND v = from`, applied iff one row changed.
    Cas {
        /// Expected value.
        from: i64,
        /// New value.
        to: i64,
    },
    /// `SELECT v FROM regs WHERE k = ?` at level `linearizable`.
    Read,
    /// `INSERT INTO list (l, v) VALUES (?, ?)`
    Append(i64),
    /// `SELECT v FROM list WHERE l = ? ORDER BY id` at level `linearizable`.
    ReadList,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Res {
    /// A write or append was acknowledged.
    Ok,
    /// A compare-and-set was acknowledged: whether it applied.
    Cas(bool),
    /// A register read.
    Value(i64),
    /// A list read.
    List(Vec<i64>),
    /// Certainly not applied (connection refused, 503, 4xx, a statement error).
    Failed(String),
    /// Maybe applied, maybe not (timeout, reset, 500, 504).
    Unknown(String),
}

/// One operation as a client saw it. Times are nanoseconds since the run started.
#[derive(Debug, Clone)]
pub struct Record {
    /// Client number.
    pub client: usize,
    /// Node the request was sent to (1-based, `db-N`).
    pub node: usize,
    /// Key.
    pub target: Target,
    /// Request.
    pub op: Op,
    /// Invocation time.
    pub call: u64,
    /// Completion time (for an unknown outcome: when the client gave up).
    pub ret: u64,
    /// Outcome.
    pub res: Res,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let res = match &self.res {
            Res::List(v) if v.len() > 12 => {
                format!("List(len {}: ..{:?})", v.len(), &v[v.len() - 12..])
            }
            r => format!("{r:?}"),
        };
        write!(
            f,
            "c{} db-{} {:>9.3}ms..{:>9.3}ms {:?} {:?} -> {}",
            self.client,
            self.node,
            self.call as f64 / 1e6,
            self.ret as f64 / 1e6,
            self.target,
            self.op,
            res
        )
    }
}

/// How the unknown outcomes were handled.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rewrites {
    /// Unknown writes observed by a later operation (return time tightened).
    pub tightened: usize,
    /// Unknown writes nobody could have noticed (dropped).
    pub dropped: usize,
    /// Unknown writes left open (+∞).
    pub open: usize,
}

/// One key's history, with the record each operation came from.
pub struct KeyHistory<I, O> {
    /// The operations.
    pub ops: Vec<Operation<I, O>>,
    /// `records[i]` is the index in the whole history of `ops[i]`.
    pub records: Vec<usize>,
}

impl<I, O> KeyHistory<I, O> {
    /// Appends to key `key`'s history in `all` the operation of record number `record`.
    fn push(
        all: &mut BTreeMap<u32, KeyHistory<I, O>>,
        key: u32,
        op: Operation<I, O>,
        record: usize,
    ) {
        let h = all.entry(key).or_insert_with(|| KeyHistory {
            ops: Vec::new(),
            records: Vec::new(),
        });
        h.ops.push(op);
        h.records.push(record);
    }
}

fn known<I, O>(r: &Record, input: I, output: O) -> Operation<I, O> {
    Operation {
        call: r.call,
        ret: Some(r.ret),
        input,
        output: Some(output),
    }
}

fn unknown<I, O>(r: &Record, input: I) -> Operation<I, O> {
    Operation {
        call: r.call,
        ret: None,
        input,
        output: None,
    }
}

/// The register sub-histories, by register number.
pub fn registers(records: &[Record]) -> (BTreeMap<u32, KeyHistory<RegOp, RegOut>>, Rewrites) {
    let mut out: BTreeMap<u32, KeyHistory<RegOp, RegOut>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let Target::Reg(k) = r.target else { continue };
        let op = match (r.op, &r.res) {
            (_, Res::Failed(_)) | (Op::Read, Res::Unknown(_)) => continue,
            (Op::Read, Res::Value(v)) => known(r, RegOp::Read, RegOut::Read(*v)),
            (Op::Write(v), Res::Ok) => known(r, RegOp::Write(v), RegOut::Ok),
            (Op::Write(v), Res::Unknown(_)) => unknown(r, RegOp::Write(v)),
            (Op::Cas { from, to }, Res::Cas(ok)) => {
                known(r, RegOp::Cas { from, to }, RegOut::Cas(*ok))
            }
            (Op::Cas { from, to }, Res::Unknown(_)) => unknown(r, RegOp::Cas { from, to }),
            (op, res) => panic!("record {i}: {op:?} cannot end in {res:?}"),
        };
        KeyHistory::push(&mut out, k, op, i);
    }
    let mut rw = Rewrites::default();
    for h in out.values_mut() {
        rewrite_registers(h, &mut rw);
    }
    (out, rw)
}

fn written(op: &RegOp) -> Option<i64> {
    match op {
        RegOp::Write(v) | RegOp::Cas { to: v, .. } => Some(*v),
        RegOp::Read => None,
    }
}

fn rewrite_registers(h: &mut KeyHistory<RegOp, RegOut>, rw: &mut Rewrites) {
    // Earliest return of an operation that observed each value.
    let mut observed: HashMap<i64, u64> = HashMap::new();
    for o in &h.ops {
        let seen = match (&o.input, &o.output) {
            (RegOp::Read, Some(RegOut::Read(v))) => *v,
            (RegOp::Cas { from, .. }, Some(RegOut::Cas(true))) => *from,
            _ => continue,
        };
        let ret = o.ret.expect("known outputs have a return time");
        let e = observed.entry(seen).or_insert(ret);
        *e = (*e).min(ret);
    }
    for o in h.ops.iter_mut().filter(|o| o.ret.is_none()) {
        if let Some(&t) = written(&o.input).and_then(|v| observed.get(&v)) {
            o.ret = Some(t.max(o.call));
            rw.tightened += 1;
        }
    }
    // Drop unobserved unknown writes while no compare-and-set that failed or may have could
    // have been linearized after them.
    loop {
        let droppable = h.ops.iter().enumerate().position(|(i, m)| {
            m.ret.is_none()
                && !h.ops.iter().enumerate().any(|(j, o)| {
                    j != i
                        && matches!(o.input, RegOp::Cas { .. })
                        && matches!(o.output, None | Some(RegOut::Cas(false)))
                        && o.ret.is_none_or(|r| r > m.call)
                })
        });
        let Some(i) = droppable else { break };
        h.ops.remove(i);
        h.records.remove(i);
        rw.dropped += 1;
    }
    rw.open += h.ops.iter().filter(|o| o.ret.is_none()).count();
}

/// The list sub-histories, by list number.
pub fn lists(records: &[Record]) -> (BTreeMap<u32, KeyHistory<ListOp, ListOut>>, Rewrites) {
    let mut out: BTreeMap<u32, KeyHistory<ListOp, ListOut>> = BTreeMap::new();
    for (i, r) in records.iter().enumerate() {
        let Target::List(l) = r.target else { continue };
        let op = match (r.op, &r.res) {
            (_, Res::Failed(_)) | (Op::ReadList, Res::Unknown(_)) => continue,
            (Op::ReadList, Res::List(v)) => known(r, ListOp::Read, ListOut::Read(v.clone())),
            (Op::Append(v), Res::Ok) => known(r, ListOp::Append(v), ListOut::Ok),
            (Op::Append(v), Res::Unknown(_)) => unknown(r, ListOp::Append(v)),
            (op, res) => panic!("record {i}: {op:?} cannot end in {res:?}"),
        };
        KeyHistory::push(&mut out, l, op, i);
    }
    let mut rw = Rewrites::default();
    for h in out.values_mut() {
        let mut observed: HashMap<i64, u64> = HashMap::new();
        for o in &h.ops {
            if let (Some(ListOut::Read(vs)), Some(ret)) = (&o.output, o.ret) {
                for v in vs {
                    let e = observed.entry(*v).or_insert(ret);
                    *e = (*e).min(ret);
                }
            }
        }
        let mut keep = Vec::with_capacity(h.ops.len());
        for o in &mut h.ops {
            let ListOp::Append(v) = o.input else {
                keep.push(true);
                continue;
            };
            if o.ret.is_some() {
                keep.push(true);
            } else if let Some(&t) = observed.get(&v) {
                o.ret = Some(t.max(o.call));
                rw.tightened += 1;
                keep.push(true);
            } else {
                rw.dropped += 1;
                keep.push(false);
            }
        }
        let mut it = keep.iter();
        h.ops.retain(|_| *it.next().unwrap_or(&true));
        let mut it = keep.iter();
        h.records.retain(|_| *it.next().unwrap_or(&true));
    }
    (out, rw)
}

/// Durability and provenance, checked directly (the linearizability check implies most of
/// it, but these name the fault plainly): every acknowledged append is in the final list of
/// its key; no read shows a value twice, a value nobody appended, or a value whose write
/// was reported as certainly failed; no register read shows a value no successful or
/// unknown write wrote. Returns one line per problem.
pub fn provenance_problems(
    records: &[Record],
    final_lists: &BTreeMap<u32, Vec<i64>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    // value -> (key, outcome of the write)
    let mut writes: HashMap<i64, (Target, &Res, usize)> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let v = match r.op {
            Op::Write(v) | Op::Cas { to: v, .. } | Op::Append(v) => v,
            Op::Read | Op::ReadList => continue,
        };
        writes.insert(v, (r.target, &r.res, i));
    }
    let check_value = |problems: &mut Vec<String>, r: &Record, v: i64| {
        if v == 0 && matches!(r.target, Target::Reg(_)) {
            return;
        }
        match writes.get(&v) {
            None => problems.push(format!("{r}: value {v} was never written")),
            Some((t, _, _)) if *t != r.target => {
                problems.push(format!("{r}: value {v} was written to {t:?}"))
            }
            Some((_, Res::Failed(why), w)) => problems.push(format!(
                "{r}: value {v} comes from a write reported as not applied ({why}): {}",
                records[*w]
            )),
            Some((_, Res::Cas(false), w)) => problems.push(format!(
                "{r}: value {v} comes from a compare-and-set reported as not applied: {}",
                records[*w]
            )),
            Some(_) => {}
        }
    };
    for r in records {
        match &r.res {
            Res::Value(v) => check_value(&mut problems, r, *v),
            Res::List(vs) => {
                let mut seen = BTreeSet::new();
                for v in vs {
                    if !seen.insert(*v) {
                        problems.push(format!("{r}: value {v} appears twice"));
                    }
                    check_value(&mut problems, r, *v);
                }
            }
            _ => {}
        }
    }
    for r in records {
        if let (Op::Append(v), Res::Ok, Target::List(l)) = (r.op, &r.res, r.target) {
            let present = final_lists.get(&l).is_some_and(|f| f.contains(&v));
            if !present {
                problems.push(format!("acknowledged append lost: {r}"));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(target: Target, op: Op, call: u64, ret: u64, res: Res) -> Record {
        Record {
            client: 0,
            node: 1,
            target,
            op,
            call,
            ret,
            res,
        }
    }

    #[test]
    fn unknown_appends_are_tightened_or_dropped() {
        let l = Target::List(0);
        let recs = vec![
            rec(l, Op::Append(1), 0, 100, Res::Unknown("timeout".into())),
            rec(l, Op::Append(2), 0, 100, Res::Unknown("timeout".into())),
            rec(l, Op::ReadList, 200, 300, Res::List(vec![1])),
            rec(l, Op::ReadList, 150, 250, Res::List(vec![1])),
        ];
        let (h, rw) = lists(&recs);
        let h = &h[&0];
        assert_eq!((rw.tightened, rw.dropped), (1, 1));
        assert_eq!(h.ops.len(), 3);
        assert_eq!(h.ops[0].ret, Some(250));
        assert_eq!(h.records, vec![0, 2, 3]);
    }

    #[test]
    fn unknown_register_writes_stay_open_while_a_failed_cas_may_need_them() {
        let k = Target::Reg(0);
        let recs = vec![
            rec(k, Op::Write(5), 0, 10, Res::Unknown("reset".into())),
            rec(k, Op::Cas { from: 0, to: 6 }, 20, 30, Res::Cas(false)),
            rec(k, Op::Write(7), 40, 50, Res::Unknown("reset".into())),
            rec(k, Op::Write(8), 40, 50, Res::Ok),
            rec(k, Op::Read, 60, 70, Res::Value(8)),
        ];
        let (h, rw) = registers(&recs);
        // Write(5) may explain the failed CAS: kept open. Write(7) was called after the CAS
        // returned and nobody saw 7: dropped.
        assert_eq!((rw.tightened, rw.dropped, rw.open), (0, 1, 1));
        assert_eq!(h[&0].records, vec![0, 1, 3, 4]);
        // The history is linearizable only thanks to Write(5) (the CAS from 0 failed).
        let m = crate::model::RegisterModel { init: 0 };
        let v = crate::checker::check(&m, &h[&0].ops, 1000);
        assert!(
            matches!(v, crate::checker::Verdict::Linearizable { .. }),
            "{v:?}"
        );
        let v = crate::checker::check(&m, &h[&0].ops[1..], 1000);
        assert!(
            matches!(v, crate::checker::Verdict::NotLinearizable { .. }),
            "{v:?}"
        );
    }

    #[test]
    fn provenance_catches_lost_and_phantom_writes() {
        let l = Target::List(0);
        let recs = vec![
            rec(l, Op::Append(1), 0, 10, Res::Ok),
            rec(l, Op::Append(2), 0, 10, Res::Failed("503 no leader".into())),
            rec(l, Op::ReadList, 20, 30, Res::List(vec![2, 2])),
        ];
        let finals = BTreeMap::from([(0, vec![2])]);
        let p = provenance_problems(&recs, &finals);
        assert!(p.iter().any(|m| m.contains("appears twice")), "{p:?}");
        assert!(
            p.iter().any(|m| m.contains("reported as not applied")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|m| m.contains("acknowledged append lost")),
            "{p:?}"
        );
        let ok = vec![
            rec(l, Op::Append(1), 0, 10, Res::Ok),
            rec(l, Op::ReadList, 20, 30, Res::List(vec![1])),
        ];
        assert!(provenance_problems(&ok, &BTreeMap::from([(0, vec![1])])).is_empty());
    }
}
