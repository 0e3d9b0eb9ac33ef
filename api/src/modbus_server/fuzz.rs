//! The fuzz entry of the write path (`testing/fuzz`, target `modbus_server_write`; feature
//! `_fuzz`, never enabled in production): arbitrary bytes become a sequence of write requests
//! (address, values) against the server's pure write path, with the API's control modes
//! standing in for the router (the REST handler calls the same `ControlModes::activate`).
//!
//! Asserted: no panic; a refused write changes nothing; an accepted one changes only
//! registers of allow-listed points (and the remaining-time and heartbeat-age points that
//! reflect them); every mode it activates validates as a controller input.

use std::collections::BTreeSet;

use super::control::{Active, Controls, Limits, Target, Writable};
use super::fill::{fill_live, fill_static, Identity, Inputs, Scales};
use super::map::{Image, RegisterMap, BASE_ADDRESS, VENDOR_MODEL_ID};
use crate::control_modes::{ControlModes, DEFAULT_WATCHDOG};
use crate::model::SiteView;
use ems_control::Override;
use jiff::Timestamp;
use serde_json::Value;

/// Registers a write may change: the allow-listed points and what reflects them.
fn may_change(map: &RegisterMap, writable: &Writable) -> BTreeSet<u16> {
    let mut set = BTreeSet::new();
    for m in &map.models {
        for p in &m.points {
            let reflects = matches!(
                (p.model, p.path.as_str()),
                (704, "WSetRvrtRem" | "WMaxLimPctRvrtRem") | (VENDOR_MODEL_ID, "CtrlHbAge")
            );
            if writable.allows(p) || reflects {
                for a in p.range() {
                    if let Ok(a) = u16::try_from(a) {
                        set.insert(a);
                    }
                }
            }
        }
    }
    set
}

/// Run the byte string `data` as writes. Panics (the fuzzer's finding) when a property fails.
///
/// # Panics
/// When a property fails.
pub fn fuzz_entry(data: &[u8]) {
    // A map that does not build is caught by the map's own unit test.
    let Ok(map) = RegisterMap::get() else { return };
    let identity = Identity { capacity_wh: Some(10_000.0), ..Identity::default() };
    let mut image = Image::new(map);
    fill_static(map, &mut image, &identity, Scales::for_site(&identity), 1);
    let writable = match data.first() {
        Some(b) => Writable { wset: b & 1 != 0, wmax_lim_pct: b & 2 != 0, heartbeat: b & 4 != 0 },
        None => return,
    };
    let allowed = may_change(map, &writable);
    let limits = Limits { rating_w: identity.rating_w, revert_max_s: 3600 };
    let mut modes = ControlModes::new(DEFAULT_WATCHDOG, identity.rating_w);
    let mut controls = Controls::new(60);
    let view = SiteView::default();
    let Ok(now) = "2026-05-01T12:00:00Z".parse::<Timestamp>() else { return };
    let refresh = |image: &mut Image, controls: &Controls, modes: &ControlModes| {
        let active = modes.active(now).copied();
        let inputs = Inputs {
            view: &view,
            active: active.as_ref(),
            controls,
            limits: &limits,
            revert_default_s: 60,
            capacity_wh: identity.capacity_wh,
            uptime_s: 0,
            ctrl_hb_age_s: controls.ctrl_hb.map(|_| 0),
            now,
        };
        fill_live(map, image, &inputs);
    };
    refresh(&mut image, &controls, &modes);
    let mut rest = data.get(1..).unwrap_or(&[]);
    while let [a0, a1, n, tail @ ..] = rest {
        let offset = u16::from_be_bytes([*a0, *a1]);
        // Mostly inside the image (and its edges), sometimes anywhere.
        let address = if offset & 0x8000 == 0 {
            let span = u16::try_from(map.len()).unwrap_or(u16::MAX).saturating_add(8);
            BASE_ADDRESS.saturating_sub(4).saturating_add((offset & 0x7FFF) % span)
        } else {
            offset
        };
        let count = usize::from(*n % 8) + usize::from(*n == 255) * 200;
        let take = (count * 2).min(tail.len());
        let values: Vec<u16> = tail
            .get(..take)
            .unwrap_or(&[])
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
            .collect();
        rest = tail.get(take..).unwrap_or(&[]);
        let before = image.clone();
        let active = match modes.active(now).map(|m| m.mode) {
            Some(Override::ForceCharge { .. }) => Active { wset: true, wmax_lim_pct: false },
            Some(Override::LimitDischarge { .. }) => Active { wset: false, wmax_lim_pct: true },
            _ => Active::default(),
        };
        let target = Target { map, image: &image, writable: &writable, limits: &limits };
        let accepted = match controls.plan(&target, active, address, &values) {
            Err(_) => false,
            Ok(planned) => {
                let ok = match &planned.dispatch {
                    None => true,
                    Some(d) => match d.body() {
                        Value::Object(body) => modes.activate(&body, now).is_ok(),
                        _ => false,
                    },
                };
                if ok {
                    controls = planned.next;
                }
                ok
            }
        };
        refresh(&mut image, &controls, &modes);
        if let Some(o) = modes.active_override(now) {
            assert!(o.validate().is_ok(), "an invalid override was activated: {o:?}");
        }
        for (i, (b, a)) in before.regs.iter().zip(&image.regs).enumerate() {
            if b != a {
                let addr = u16::try_from(i).ok().and_then(|i| BASE_ADDRESS.checked_add(i));
                assert!(accepted, "a refused write changed register {addr:?}");
                assert!(
                    addr.is_some_and(|x| allowed.contains(&x)),
                    "write at {address} {values:?} changed register {addr:?}, not on the allow-list"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn arbitrary_writes_change_only_allow_listed_registers(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            super::fuzz_entry(&data);
        }
    }

    #[test]
    fn a_targeted_sequence_activates_and_deactivates() {
        let map = super::RegisterMap::get().unwrap();
        let ena = map.point(704, "WSetEna").unwrap().address - super::BASE_ADDRESS;
        let [h, l] = ena.to_be_bytes();
        // Enable (0 W: FORCE_CHARGE 0), then disable.
        super::fuzz_entry(&[7, h, l, 1, 0, 1, h, l, 1, 0, 0]);
    }
}
