//! The memory plan: which buffer ("slot") each temporary lives in.
//!
//! Temporaries are placed greedily in execution order: a step's output takes
//! the smallest free slot that fits (or grows the largest free one, or opens a
//! new slot), and a temporary's slot is freed after its last reader. Graph
//! outputs are never freed. Because a step's output is placed before its
//! inputs are freed, no kernel ever writes a buffer it reads.

use super::lower::{Program, Step, ValueRef};

/// Slot assignment for a [`Program`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The slot of each temporary; [`IN_OUTPUT`] for graph outputs, which
    /// kernels write straight into the caller's output buffers.
    pub slot_of: Vec<usize>,
    /// The capacity (floats) of each slot.
    pub slot_len: Vec<usize>,
}

impl MemoryPlan {
    /// Total floats over all slots (what one arena allocates).
    pub fn total_len(&self) -> usize {
        self.slot_len.iter().sum()
    }
}

/// `slot_of` marker of a temporary that lives in a caller's output buffer.
pub const IN_OUTPUT: usize = usize::MAX;

/// Plans slots for `program`.
pub fn plan(program: &Program) -> MemoryPlan {
    let temps = program.temp_len.len();
    // Last step reading each temporary; graph outputs live to the end.
    let mut last_use: Vec<usize> = vec![0; temps];
    for (i, step) in program.steps.iter().enumerate() {
        last_use[step.output] = last_use[step.output].max(i);
        for v in &step.inputs {
            if let ValueRef::Temp(t) = v {
                last_use[*t] = last_use[*t].max(i);
            }
        }
    }
    for (v, _) in &program.outputs {
        if let ValueRef::Temp(t) = v {
            last_use[*t] = usize::MAX;
        }
    }
    let mut plan = MemoryPlan { slot_of: vec![0; temps], slot_len: Vec::new() };
    let mut free: Vec<usize> = Vec::new();
    for (i, step) in program.steps.iter().enumerate() {
        if last_use[step.output] == usize::MAX {
            plan.slot_of[step.output] = IN_OUTPUT;
            free_dead_values(&mut free, &plan, step, i, &last_use);
            continue;
        }
        let len = program.temp_len[step.output];
        let best_fit =
            free.iter().enumerate().filter(|(_, &s)| plan.slot_len[s] >= len).min_by_key(|(_, &s)| plan.slot_len[s]);
        let slot = match best_fit {
            Some((k, _)) => free.swap_remove(k),
            None => match free.iter().enumerate().max_by_key(|(_, &s)| plan.slot_len[s]) {
                Some((k, _)) => {
                    let s = free.swap_remove(k);
                    plan.slot_len[s] = len;
                    s
                }
                None => {
                    plan.slot_len.push(len);
                    plan.slot_len.len() - 1
                }
            },
        };
        plan.slot_of[step.output] = slot;
        free_dead_values(&mut free, &plan, step, i, &last_use);
    }
    plan
}

/// Frees the slots of the temporaries whose last reader is step `i`
/// (including its own output if nothing reads it).
fn free_dead_values(free: &mut Vec<usize>, plan: &MemoryPlan, step: &Step, i: usize, last_use: &[usize]) {
    let mut dying: Vec<usize> = step
        .inputs
        .iter()
        .filter_map(|v| match v {
            ValueRef::Temp(t) if last_use[*t] == i => Some(*t),
            _ => None,
        })
        .collect();
    if last_use[step.output] == i {
        dying.push(step.output); // computed but never read (dead code)
    }
    dying.sort_unstable();
    dying.dedup();
    free.extend(dying.into_iter().map(|t| plan.slot_of[t]).filter(|&s| s != IN_OUTPUT));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::lower::Step;
    use crate::library::KernelId;

    fn step(inputs: Vec<ValueRef>, output: usize) -> Step {
        // Planning never looks at the kernel; any id will do.
        let mut kb = crate::library::KernelBuilder::new().expect("builder");
        let kernel: KernelId = kb.add_activation(1, crate::epilogue::Activation::Relu).expect("kernel");
        Step { kernel, inputs, output, nodes: String::new() }
    }

    #[test]
    fn chain_reuses_two_slots() {
        // x -> t0 -> t1 -> t2 -> t3 (output)
        let program = Program {
            steps: vec![
                step(vec![ValueRef::Input(0)], 0),
                step(vec![ValueRef::Temp(0)], 1),
                step(vec![ValueRef::Temp(1)], 2),
                step(vec![ValueRef::Temp(2)], 3),
            ],
            temp_len: vec![10, 20, 5, 8],
            outputs: vec![(ValueRef::Temp(3), vec![8])],
        };
        let p = plan(&program);
        assert_eq!(p.slot_len.len(), 2);
        // No step writes the slot it reads.
        for s in &program.steps {
            for v in &s.inputs {
                if let ValueRef::Temp(t) = v {
                    assert_ne!(p.slot_of[*t], p.slot_of[s.output]);
                }
            }
        }
        // Every temporary fits its slot; the graph output needs none.
        assert_eq!(p.slot_of[3], IN_OUTPUT);
        for (t, &len) in program.temp_len.iter().enumerate().take(3) {
            assert!(p.slot_len[p.slot_of[t]] >= len);
        }
    }

    #[test]
    fn values_live_across_a_branch_keep_their_slot() {
        // t0 is read by step 1 and step 3 (a skip connection).
        let program = Program {
            steps: vec![
                step(vec![ValueRef::Input(0)], 0),
                step(vec![ValueRef::Temp(0)], 1),
                step(vec![ValueRef::Temp(1)], 2),
                step(vec![ValueRef::Temp(2), ValueRef::Temp(0)], 3),
            ],
            temp_len: vec![4, 4, 4, 4],
            outputs: vec![(ValueRef::Temp(3), vec![4])],
        };
        let p = plan(&program);
        let s = &p.slot_of;
        assert_ne!(s[0], s[1]);
        assert_ne!(s[0], s[2]);
        assert_eq!(s[3], IN_OUTPUT);
    }
}
