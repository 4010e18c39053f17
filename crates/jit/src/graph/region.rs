//! Elementwise regions: which nodes after a value fuse into one pass, and
//! the [`Tail`](crate::chain::Tail) program that computes them.
//!
//! A region starts at one value (the root) and takes every unary
//! elementwise op and same-shape `Add`/`Sub`/`Mul` whose operands are all in
//! it, so its leaves are the root alone: `hardswish(x) + gelu(x) − sigmoid(x)`,
//! `x · sigmoid(x)` written out, a residual `x + f(x)`. It ends at one node
//! (the exit) whose value leaves it; every other member is used only
//! inside. [`choose`] picks the largest such region; [`program`] schedules
//! it over the block and a few saved copies.

use kiln_ir::ArithOp;

use crate::chain::{TailOp, UnaryOp, MAX_SLOTS};

/// A member of a region. Operands are value indices: 0 is the root,
/// `i + 1` the `i`-th member (members in a topological order).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Member {
    /// A unary op of one value.
    Unary(UnaryOp, usize),
    /// `a op b` of two values of the same shape.
    Binary(ArithOp, usize, usize),
}

impl Member {
    fn operands(&self) -> Vec<usize> {
        match self {
            Member::Unary(_, a) => vec![*a],
            Member::Binary(_, a, b) => vec![*a, *b],
        }
    }
}

/// The members of the largest valid region inside `members` (a candidate
/// grown greedily), as indices into it, ending at its exit; `escapes[v]`
/// says value `v` (0 = root) is used outside the candidate. A region is
/// valid when only its exit escapes and every other value's uses are all
/// members of it. Empty when no member qualifies.
pub(crate) fn choose(members: &[Member], escapes: &[bool]) -> Vec<usize> {
    let values = members.len() + 1;
    let mut best: Vec<usize> = Vec::new();
    for exit in 0..members.len() {
        // The exit's ancestors among the members.
        let mut inside = vec![false; values];
        inside[exit + 1] = true;
        for m in (0..=exit).rev() {
            if inside[m + 1] {
                for o in members[m].operands() {
                    inside[o] = true;
                }
            }
        }
        if !inside[0] {
            continue;
        }
        let valid = (0..values).filter(|&v| inside[v] && v != exit + 1).all(|v| {
            !escapes[v] && members.iter().enumerate().all(|(m, mem)| inside[m + 1] || !mem.operands().contains(&v))
        });
        let region: Vec<usize> = (0..=exit).filter(|&m| inside[m + 1]).collect();
        if valid && region.len() >= best.len() {
            best = region;
        }
    }
    best
}

/// The program's bookkeeping: which value is current, which are saved,
/// how many reads each still has. Invariant: every value still to be read
/// is current or saved.
struct Schedule {
    ops: Vec<TailOp>,
    current: usize,
    slot_of: Vec<Option<usize>>,
    uses: Vec<usize>,
    free: Vec<usize>,
}

impl Schedule {
    fn save(&mut self, v: usize) -> Option<()> {
        if self.slot_of[v].is_none() {
            let s = self.free.pop()?;
            self.ops.push(TailOp::Save(s));
            self.slot_of[v] = Some(s);
        }
        Some(())
    }

    /// Makes `v` current, saving the current value if it is read again.
    fn bring(&mut self, v: usize) -> Option<()> {
        if self.current != v {
            if self.uses[self.current] > 0 {
                self.save(self.current)?;
            }
            self.ops.push(TailOp::Load(self.slot_of[v]?));
            self.current = v;
        }
        Some(())
    }
}

/// The program computing the last of `members` (a region, as [`choose`]
/// returns it renumbered) into the current value, which starts as the
/// root; `None` if it needs more than [`MAX_SLOTS`] saved copies.
pub(crate) fn program(members: &[Member]) -> Option<Vec<TailOp>> {
    let values = members.len() + 1;
    let mut uses = vec![0usize; values];
    for m in members {
        for o in m.operands() {
            uses[o] += 1;
        }
    }
    let mut s = Schedule {
        ops: Vec::new(),
        current: 0,
        slot_of: vec![None; values],
        uses,
        free: (0..MAX_SLOTS).rev().collect(),
    };
    for (i, m) in members.iter().enumerate() {
        match m {
            Member::Unary(op, a) => {
                s.bring(*a)?;
                if s.uses[*a] > 1 {
                    s.save(*a)?;
                }
                s.uses[*a] -= 1;
                s.ops.push(TailOp::Unary(op.clone()));
            }
            Member::Binary(op, a, b) => {
                // The current operand is overwritten, the other read from its slot.
                let (cur, other, slot_first) = if s.current == *b && a != b { (*b, *a, true) } else { (*a, *b, false) };
                s.bring(cur)?;
                if a == b || s.uses[cur] > 1 {
                    s.save(cur)?;
                }
                let slot = s.slot_of[other]?;
                s.uses[*a] -= 1;
                s.uses[*b] -= 1;
                s.ops.push(TailOp::Combine { op: *op, slot, slot_first });
            }
        }
        for v in 0..values {
            if s.uses[v] == 0 {
                if let Some(slot) = s.slot_of[v].take() {
                    s.free.push(slot);
                }
            }
        }
        s.current = i + 1;
    }
    Some(s.ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Tail;
    use crate::epilogue::Activation;
    use kiln_ir::{GeluApproximate, Pointwise};

    /// Each member evaluated on whole vectors, the definition.
    fn eval(members: &[Member], x: &[f32]) -> Vec<f32> {
        let mut vals = vec![x.to_vec()];
        for m in members {
            let v = match m {
                Member::Unary(op, a) => {
                    let t = Tail::new(vec![op.clone()], x.len()).expect("tail");
                    let mut v = vals[*a].clone();
                    t.apply(&mut v, 0);
                    v
                }
                Member::Binary(op, a, b) => vals[*a]
                    .iter()
                    .zip(&vals[*b])
                    .map(|(p, q)| match op {
                        ArithOp::Add => p + q,
                        ArithOp::Sub => p - q,
                        ArithOp::Mul => p * q,
                    })
                    .collect(),
            };
            vals.push(v);
        }
        vals.pop().unwrap_or_default()
    }

    fn check(members: &[Member]) {
        let len = 2500;
        let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 401) as f32 / 80.0 - 2.5).collect();
        let ops = program(members).expect("a program");
        let tail = Tail::program(ops.clone(), len).expect("valid program");
        let mut got = x.clone();
        tail.apply(&mut got, 0);
        assert_eq!(got, eval(members, &x), "{ops:?}");
    }

    fn un(f: Pointwise, a: usize) -> Member {
        Member::Unary(UnaryOp::Pointwise(f), a)
    }

    #[test]
    fn programs_compute_their_regions() {
        let sig = |a| Member::Unary(UnaryOp::Activation(Activation::Sigmoid), a);
        // hardswish(x) + gelu(x) - sigmoid(x)
        check(&[
            un(Pointwise::Hardswish, 0),
            un(Pointwise::Gelu { approximate: GeluApproximate::None }, 0),
            Member::Binary(ArithOp::Add, 1, 2),
            sig(0),
            Member::Binary(ArithOp::Sub, 3, 4),
        ]);
        // x * sigmoid(x), and the other operand order
        check(&[sig(0), Member::Binary(ArithOp::Mul, 0, 1)]);
        check(&[sig(0), Member::Binary(ArithOp::Sub, 1, 0)]);
        check(&[sig(0), Member::Binary(ArithOp::Sub, 0, 1)]);
        // x*x - x, a value used three times, a long linear tail after
        check(&[
            Member::Binary(ArithOp::Mul, 0, 0),
            Member::Binary(ArithOp::Sub, 1, 0),
            Member::Binary(ArithOp::Add, 0, 2),
            sig(3),
            un(Pointwise::Silu, 4),
        ]);
        // (a - b) with neither current: a = tanh(x), b = sigmoid(x), then c = x + a
        let tanh = |a| Member::Unary(UnaryOp::Activation(Activation::Tanh), a);
        check(&[
            tanh(0),
            sig(0),
            un(Pointwise::Silu, 0),
            Member::Binary(ArithOp::Sub, 1, 2),
            Member::Binary(ArithOp::Mul, 4, 3),
            Member::Binary(ArithOp::Add, 5, 1),
        ]);
    }

    #[test]
    fn regions_end_where_only_the_exit_escapes() {
        let sig = |a| Member::Unary(UnaryOp::Activation(Activation::Sigmoid), a);
        let members = [sig(0), Member::Binary(ArithOp::Mul, 0, 1), sig(2)];
        assert_eq!(choose(&members, &[false, false, false, true]), vec![0, 1, 2]);
        // The product is also used outside: the region ends there.
        assert_eq!(choose(&members, &[false, false, true, true]), vec![0, 1]);
        // The root escapes: no region computes it for the outside.
        assert!(choose(&members, &[true, false, false, true]).is_empty());
        // Two sinks (sigmoid(x) and tanh(x) both leave): one of them only.
        let two = [sig(0), Member::Unary(UnaryOp::Activation(Activation::Tanh), 0)];
        assert_eq!(choose(&two, &[false, true, true]).len(), 0);
    }
}
