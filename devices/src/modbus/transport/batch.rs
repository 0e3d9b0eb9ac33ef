//! Read batching: many wanted register ranges → few requests of at most 125 registers.
//!
//! A [`ReadPlan`] merges wanted ranges of the same [`RegisterKind`] that overlap or touch into
//! as few requests as possible (for contiguous input: `ceil(len / 125)`, which is minimal).
//! With `max_gap > 0` it also bridges holes of up to `max_gap` registers between wanted ranges,
//! trading a few unused registers for a round trip. **Bridging can hit unmapped registers:**
//! many devices answer a read that touches an unmapped address with `IllegalDataAddress` for the
//! whole request. [`execute`] therefore re-reads the wanted ranges of a merged request one by
//! one when that request draws an exception, so a bridged gap costs round trips, never data;
//! still, keep `max_gap` at 0 (the default) unless the register map is known to be dense.

use core::fmt;

use crate::modbus::{
    LinkError, ModbusException, RegisterAddress, RegisterClient, RegisterKind, MAX_READ_REGISTERS,
};

/// One range a driver wants, tagged with the caller's `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedRange<Id> {
    /// The caller's name for the range (a model id, a profile field, …).
    pub id: Id,
    /// Register table.
    pub kind: RegisterKind,
    /// First register (0-based).
    pub address: RegisterAddress,
    /// Number of registers (≥ 1; may exceed 125, it is then split over requests).
    pub count: u16,
}

impl<Id> WantedRange<Id> {
    /// A wanted range.
    #[must_use]
    pub fn new(id: Id, kind: RegisterKind, address: RegisterAddress, count: u16) -> Self {
        Self { id, kind, address, count }
    }

    fn span(&self) -> (u32, u32) {
        let start = u32::from(self.address.0);
        (start, start + u32::from(self.count))
    }
}

/// One request of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// Register table.
    pub kind: RegisterKind,
    /// First register.
    pub address: RegisterAddress,
    /// Number of registers (1..=125).
    pub count: u16,
}

impl ReadRequest {
    fn span(&self) -> (u32, u32) {
        let start = u32::from(self.address.0);
        (start, start + u32::from(self.count))
    }
}

/// A wanted range that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// `count` is zero.
    #[error("wanted range #{index} at {address} has zero registers")]
    Empty {
        /// Position in the list given to [`ReadPlan::new`].
        index: usize,
        /// Its address.
        address: RegisterAddress,
    },
    /// The range runs past address 65535.
    #[error("wanted range #{index} at {address} with {count} registers runs past address 65535")]
    PastEnd {
        /// Position in the list given to [`ReadPlan::new`].
        index: usize,
        /// Its address.
        address: RegisterAddress,
        /// Its count.
        count: u16,
    },
}

/// The requests that cover a list of wanted ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPlan<Id> {
    wanted: Vec<WantedRange<Id>>,
    requests: Vec<ReadRequest>,
}

impl<Id> ReadPlan<Id> {
    /// Plan the reads for `wanted`, bridging holes of up to `max_gap` registers (see the module
    /// documentation before using a gap > 0).
    ///
    /// # Errors
    /// [`PlanError`] for an empty range or one that runs past address 65535.
    pub fn new(wanted: Vec<WantedRange<Id>>, max_gap: u16) -> Result<Self, PlanError> {
        for (index, w) in wanted.iter().enumerate() {
            if w.count == 0 {
                return Err(PlanError::Empty { index, address: w.address });
            }
            if w.span().1 > 0x1_0000 {
                return Err(PlanError::PastEnd { index, address: w.address, count: w.count });
            }
        }
        let mut requests = Vec::new();
        for kind in [RegisterKind::Holding, RegisterKind::Input] {
            let mut spans: Vec<(u32, u32)> =
                wanted.iter().filter(|w| w.kind == kind).map(WantedRange::span).collect();
            spans.sort_unstable();
            plan_kind(kind, &union(spans), u32::from(max_gap), &mut requests);
        }
        Ok(Self { wanted, requests })
    }

    /// The requests, holding registers first, each table in address order.
    #[must_use]
    pub fn requests(&self) -> &[ReadRequest] {
        &self.requests
    }

    /// The wanted ranges, in the order given.
    #[must_use]
    pub fn wanted(&self) -> &[WantedRange<Id>] {
        &self.wanted
    }
}

/// Sorted intervals → disjoint, non-touching intervals.
fn union(sorted: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(sorted.len());
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Greedy from the left over the wanted registers: a request starts at the first uncovered
/// wanted register and takes every later wanted register within 125 registers of its start, as
/// long as no hole on the way is wider than `max_gap`; it ends at the last wanted register it
/// takes (never on a hole). Greedy-from-the-left is optimal for covering points with intervals
/// of fixed length, so the request count is minimal for the allowed gaps.
fn plan_kind(kind: RegisterKind, union: &[(u32, u32)], max_gap: u32, out: &mut Vec<ReadRequest>) {
    let max = u32::from(MAX_READ_REGISTERS);
    let mut open: Option<(u32, u32)> = None;
    let push = |(s, e): (u32, u32), out: &mut Vec<ReadRequest>| {
        // Both fit: s < 65536 and e - s <= 125.
        if let (Ok(address), Ok(count)) = (u16::try_from(s), u16::try_from(e - s)) {
            out.push(ReadRequest { kind, address: RegisterAddress(address), count });
        }
    };
    for &(a, b) in union {
        let mut pos = a;
        while pos < b {
            match open {
                Some((s, e)) if pos - e <= max_gap && pos < s + max => {
                    let end = b.min(s + max);
                    open = Some((s, end));
                    pos = end;
                }
                Some(req) => {
                    push(req, out);
                    open = None;
                }
                None => open = Some((pos, pos)),
            }
        }
    }
    if let Some(req) = open {
        push(req, out);
    }
}

/// The registers of every wanted range, in the order given to [`ReadPlan::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult<Id> {
    /// `(id, registers or the exception that refused them)` per wanted range.
    pub ranges: Vec<(Id, Result<Vec<u16>, ModbusException>)>,
    /// Round trips made (plan requests plus one-by-one re-reads after exceptions).
    pub round_trips: usize,
}

impl<Id: PartialEq> BatchResult<Id> {
    /// The result of the first wanted range with this id.
    #[must_use]
    pub fn get(&self, id: &Id) -> Option<&Result<Vec<u16>, ModbusException>> {
        self.ranges.iter().find(|(i, _)| i == id).map(|(_, r)| r)
    }
}

impl<Id: fmt::Debug> fmt::Display for BatchResult<Id> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = self.ranges.iter().filter(|(_, r)| r.is_err()).count();
        write!(f, "{} ranges ({failed} refused) in {} round trips", self.ranges.len(), self.round_trips)
    }
}

/// Run `plan` on `client`.
///
/// A wanted range gets its registers, or the exception of a request that covered it. A merged
/// request (covering more than one wanted range) that draws an exception is not trusted to speak
/// for each of them: their ranges are re-read one by one (split at 125), so one unmapped register
/// in a bridged gap or a neighbouring block does not hide the others.
///
/// # Errors
/// The first [`LinkError`]: a batch is read over one link, and once it fails the rest of the
/// cycle's reads would fail the same way (the supervised clients fail fast while reconnecting).
pub async fn execute<Id: Clone, C: RegisterClient>(
    plan: &ReadPlan<Id>,
    client: &mut C,
) -> Result<BatchResult<Id>, LinkError> {
    let mut answers: Vec<Result<Vec<u16>, ModbusException>> = Vec::with_capacity(plan.requests.len());
    for r in &plan.requests {
        answers.push(client.read(r.kind, r.address, r.count).await?);
    }
    let mut round_trips = plan.requests.len();
    let mut ranges = Vec::with_capacity(plan.wanted.len());
    for w in &plan.wanted {
        let result = match assemble(plan, &answers, w) {
            Assembled::Done(r) => r,
            Assembled::Retry => {
                let (r, trips) = read_alone(client, w).await?;
                round_trips += trips;
                r
            }
        };
        ranges.push((w.id.clone(), result));
    }
    Ok(BatchResult { ranges, round_trips })
}

enum Assembled {
    Done(Result<Vec<u16>, ModbusException>),
    Retry,
}

fn assemble<Id>(
    plan: &ReadPlan<Id>,
    answers: &[Result<Vec<u16>, ModbusException>],
    w: &WantedRange<Id>,
) -> Assembled {
    let (ws, we) = w.span();
    let mut out = Vec::with_capacity(usize::from(w.count));
    for (req, answer) in plan.requests.iter().zip(answers) {
        let (rs, re) = req.span();
        if req.kind != w.kind || re <= ws || rs >= we {
            continue;
        }
        match answer {
            Ok(values) => {
                let from = usize::try_from(ws.max(rs) - rs).unwrap_or(usize::MAX);
                let to = usize::try_from(we.min(re) - rs).unwrap_or(usize::MAX);
                match values.get(from..to) {
                    Some(part) => out.extend_from_slice(part),
                    None => return Assembled::Done(Err(ModbusException::ServerDeviceFailure)),
                }
            }
            Err(e) => {
                let shared = plan.wanted.iter().any(|o| {
                    let (os, oe) = o.span();
                    o.kind == req.kind && os < re && oe > rs && (os, oe) != (ws, we)
                }) || rs < ws
                    || re > we;
                return if shared { Assembled::Retry } else { Assembled::Done(Err(*e)) };
            }
        }
    }
    Assembled::Done(Ok(out))
}

async fn read_alone<Id, C: RegisterClient>(
    client: &mut C,
    w: &WantedRange<Id>,
) -> Result<(Result<Vec<u16>, ModbusException>, usize), LinkError> {
    let mut out = Vec::with_capacity(usize::from(w.count));
    let mut trips = 0;
    let mut done: u16 = 0;
    while done < w.count {
        let n = (w.count - done).min(MAX_READ_REGISTERS);
        let Some(address) = w.address.offset(done) else { break };
        trips += 1;
        match client.read(w.kind, address, n).await? {
            Ok(values) => out.extend(values),
            Err(e) => return Ok((Err(e), trips)),
        }
        done += n;
    }
    Ok((Ok(out), trips))
}

/// Exercise the planner on arbitrary bytes and check its invariants (a fuzz entry, feature
/// `_fuzz`, not for production; it never panics, the fuzz target asserts on the result). The
/// first byte picks `max_gap` (0..=7); the rest is read as 5-byte records: kind (low bit),
/// address (BE), count (BE, modulo 600).
///
/// # Errors
/// The broken invariant: a request outside 1..=125 registers or past the address space, or a
/// wanted register covered other than exactly once.
#[cfg(any(test, feature = "_fuzz"))]
pub fn fuzz_entry(data: &[u8]) -> Result<(), String> {
    let max_gap = u16::from(data.first().copied().unwrap_or(0) % 8);
    let wanted: Vec<WantedRange<usize>> = data
        .get(1..)
        .unwrap_or_default()
        .chunks_exact(5)
        .enumerate()
        .map(|(i, c)| {
            let kind = if c[0] & 1 == 0 { RegisterKind::Holding } else { RegisterKind::Input };
            let address = u16::from_be_bytes([c[1], c[2]]);
            // Keep counts moderate so the coverage check stays cheap.
            let count = u16::from_be_bytes([c[3], c[4]]) % 600;
            WantedRange::new(i, kind, RegisterAddress(address), count)
        })
        .collect();
    let Ok(plan) = ReadPlan::new(wanted, max_gap) else { return Ok(()) };
    for r in plan.requests() {
        if r.count == 0
            || r.count > MAX_READ_REGISTERS
            || u32::from(r.address.0) + u32::from(r.count) > 0x1_0000
        {
            return Err(format!("bad request {r:?}"));
        }
    }
    for w in plan.wanted() {
        let (s, e) = w.span();
        for reg in s..e {
            let n = plan
                .requests()
                .iter()
                .filter(|r| r.kind == w.kind && r.span().0 <= reg && reg < r.span().1)
                .count();
            if n != 1 {
                return Err(format!("register {reg} of {w:?} covered {n} times"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modbus::MemoryRegisters;
    use proptest::prelude::*;

    fn h(id: usize, a: u16, n: u16) -> WantedRange<usize> {
        WantedRange::new(id, RegisterKind::Holding, RegisterAddress(a), n)
    }

    fn spans(plan: &ReadPlan<usize>) -> Vec<(u16, u16)> {
        plan.requests().iter().map(|r| (r.address.0, r.count)).collect()
    }

    #[test]
    fn adjacent_and_overlapping_ranges_merge_and_split_at_125() {
        let plan =
            ReadPlan::new(vec![h(0, 0, 100), h(1, 100, 100), h(2, 150, 10), h(3, 300, 60)], 0).unwrap();
        assert_eq!(spans(&plan), vec![(0, 125), (125, 75), (300, 60)]);
    }

    #[test]
    fn gaps_bridge_only_up_to_max_gap() {
        let wanted = vec![h(0, 0, 10), h(1, 12, 10), h(2, 30, 5)];
        assert_eq!(spans(&ReadPlan::new(wanted.clone(), 0).unwrap()), vec![(0, 10), (12, 10), (30, 5)]);
        assert_eq!(spans(&ReadPlan::new(wanted.clone(), 2).unwrap()), vec![(0, 22), (30, 5)]);
        assert_eq!(spans(&ReadPlan::new(wanted, 8).unwrap()), vec![(0, 35)]);
    }

    #[test]
    fn kinds_are_never_merged_and_errors_name_the_range() {
        let plan = ReadPlan::new(
            vec![h(0, 0, 2), WantedRange::new(1, RegisterKind::Input, RegisterAddress(2), 2)],
            0,
        )
        .unwrap();
        assert_eq!(plan.requests().len(), 2);
        assert_eq!(
            ReadPlan::new(vec![h(0, 0, 1), h(1, 5, 0)], 0),
            Err(PlanError::Empty { index: 1, address: RegisterAddress(5) })
        );
        assert!(matches!(ReadPlan::new(vec![h(7, 65_535, 2)], 0), Err(PlanError::PastEnd { index: 0, .. })));
        assert_eq!(spans(&ReadPlan::new(vec![h(0, 65_535, 1)], 0).unwrap()), vec![(65_535, 1)]);
    }

    #[test]
    fn execute_assembles_ranges_and_rereads_after_an_exception_in_a_bridged_gap() {
        let mut m = MemoryRegisters::default();
        m.put(0, &(0..10).collect::<Vec<u16>>());
        m.put(12, &(12..20).collect::<Vec<u16>>());
        let plan = ReadPlan::new(vec![h(0, 0, 10), h(1, 12, 8), h(2, 4, 3)], 2).unwrap();
        assert_eq!(plan.requests().len(), 1);
        let r = pollster::block_on(execute(&plan, &mut m)).unwrap();
        assert_eq!(r.get(&0), Some(&Ok((0..10).collect())));
        assert_eq!(r.get(&1), Some(&Ok((12..20).collect())));
        assert_eq!(r.get(&2), Some(&Ok(vec![4, 5, 6])));
        assert_eq!(r.round_trips, 4, "1 merged request refused, 3 re-reads");

        let plan = ReadPlan::new(vec![h(0, 0, 10), h(1, 40, 2)], 0).unwrap();
        let r = pollster::block_on(execute(&plan, &mut m)).unwrap();
        assert_eq!(r.get(&1), Some(&Err(ModbusException::IllegalDataAddress)));
        assert_eq!(r.round_trips, 2, "an unshared refused request is not retried");
    }

    #[test]
    fn execute_reassembles_ranges_longer_than_one_request() {
        let mut m = MemoryRegisters::default();
        let values: Vec<u16> = (0..310).collect();
        m.put(1000, &values);
        let plan = ReadPlan::new(vec![h(0, 1000, 250), h(1, 1250, 60), h(2, 1100, 200)], 0).unwrap();
        assert_eq!(spans(&plan), vec![(1000, 125), (1125, 125), (1250, 60)]);
        let r = pollster::block_on(execute(&plan, &mut m)).unwrap();
        assert_eq!(r.get(&0), Some(&Ok(values[..250].to_vec())));
        assert_eq!(r.get(&1), Some(&Ok(values[250..].to_vec())));
        assert_eq!(r.get(&2), Some(&Ok(values[100..300].to_vec())));
        assert_eq!(r.round_trips, 3);
    }

    #[test]
    fn fuzz_entry_survives_edge_inputs() {
        assert_eq!(fuzz_entry(&[]), Ok(()));
        assert_eq!(fuzz_entry(&[7, 0, 0xff, 0xff, 0x02, 0x57, 1, 0, 0, 0, 1]), Ok(()));
    }

    fn wanted_strategy() -> impl Strategy<Value = Vec<WantedRange<usize>>> {
        prop::collection::vec((any::<bool>(), 0u16..2000, 1u16..400), 0..20).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (input, a, n))| {
                    WantedRange::new(
                        i,
                        if input { RegisterKind::Input } else { RegisterKind::Holding },
                        RegisterAddress(a),
                        n,
                    )
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn every_wanted_register_is_covered_exactly_once(wanted in wanted_strategy(), gap in 0u16..20) {
            let plan = ReadPlan::new(wanted, gap).unwrap();
            for r in plan.requests() {
                prop_assert!(r.count >= 1 && r.count <= MAX_READ_REGISTERS);
            }
            for w in plan.wanted() {
                let (s, e) = w.span();
                for reg in s..e {
                    let n = plan.requests().iter().filter(|r| r.kind == w.kind && r.span().0 <= reg && reg < r.span().1).count();
                    prop_assert_eq!(n, 1, "register {} of {:?}", reg, w);
                }
            }
            // Requests read no register further than `gap` from a wanted one, and never start or
            // end on an unwanted one.
            for r in plan.requests() {
                let wanted_at = |reg: u32| plan.wanted().iter().any(|w| w.kind == r.kind && w.span().0 <= reg && reg < w.span().1);
                let (s, e) = r.span();
                prop_assert!(wanted_at(s) && wanted_at(e - 1));
            }
        }

        #[test]
        fn contiguous_input_needs_the_minimal_number_of_requests(start in 0u16..10_000, cuts in prop::collection::vec(1u16..300, 1..10)) {
            // Consecutive, touching ranges: one block of `total` registers.
            let mut wanted = Vec::new();
            let mut a = start;
            for (i, n) in cuts.iter().enumerate() {
                wanted.push(h(i, a, *n));
                a += n;
            }
            let total = u32::from(a - start);
            let plan = ReadPlan::new(wanted, 0).unwrap();
            prop_assert_eq!(u32::try_from(plan.requests().len()).unwrap(), total.div_ceil(125));
        }

        #[test]
        fn execute_returns_exactly_the_image(wanted in wanted_strategy(), gap in 0u16..20) {
            let mut m = MemoryRegisters::default();
            let image: Vec<u16> = (0..2400).map(|x| x ^ 0x5a5a).collect();
            m.put(0, &image);
            m.input = m.holding.iter().map(|(k, v)| (*k, !*v)).collect();
            let plan = ReadPlan::new(wanted, gap).unwrap();
            let r = pollster::block_on(execute(&plan, &mut m)).unwrap();
            prop_assert_eq!(r.round_trips, plan.requests().len());
            for (w, (id, got)) in plan.wanted().iter().zip(&r.ranges) {
                prop_assert_eq!(*id, w.id);
                let (s, e) = w.span();
                let want: Vec<u16> = image[s as usize..e as usize].iter().map(|v| if w.kind == RegisterKind::Input { !*v } else { *v }).collect();
                prop_assert_eq!(got, &Ok(want));
            }
        }
    }
}
