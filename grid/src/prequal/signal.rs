//! The test-signal generator: the sequences of the Nordic FCR test program and the FFR tests,
//! each a piecewise function of time (holds, linear ramps, sines) that gives the injected
//! frequency at any `t`. Allocation-free once built; the built-in list is fixed.

use core::fmt;
use core::str::FromStr;

/// The nominal frequency of every sequence (Nordic area).
pub const NOMINAL_HZ: f64 = 50.0;

/// Which service a run tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceUnderTest {
    /// FCR-N (linear ±C over 49.9–50.1 Hz).
    FcrN,
    /// FCR-D upwards (49.9 → 49.5 Hz).
    FcrDUp,
    /// FCR-D downwards (50.1 → 50.5 Hz).
    FcrDDown,
    /// FFR (a step of C at the sold level).
    Ffr,
}

impl ServiceUnderTest {
    /// Every service, in CLI order.
    pub const ALL: [Self; 4] = [Self::FcrN, Self::FcrDUp, Self::FcrDDown, Self::Ffr];

    /// The CLI name (`fcr-n`, `fcr-d-up`, `fcr-d-down`, `ffr`).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::FcrN => "fcr-n",
            Self::FcrDUp => "fcr-d-up",
            Self::FcrDDown => "fcr-d-down",
            Self::Ffr => "ffr",
        }
    }

    /// The frequency deviation at which the response is 100 % of C (the per-unit base of the
    /// transfer function): 0.1 Hz for FCR-N, 0.4 Hz for FCR-D (49.9 → 49.5 Hz), 0 for FFR.
    #[must_use]
    pub const fn full_deviation_hz(self) -> f64 {
        match self {
            Self::FcrN => 0.1,
            Self::FcrDUp | Self::FcrDDown => 0.4,
            Self::Ffr => 0.0,
        }
    }
}

impl fmt::Display for ServiceUnderTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown service name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--service {0:?}: expected fcr-n, fcr-d-up, fcr-d-down or ffr")]
pub struct UnknownService(pub String);

impl FromStr for ServiceUnderTest {
    type Err = UnknownService;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| UnknownService(s.to_owned()))
    }
}

/// One piece of a sequence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Segment {
    /// Hold `hz` for `secs`.
    Hold {
        /// The frequency.
        hz: f64,
        /// How long.
        secs: f64,
    },
    /// Move linearly from the previous segment's end to `to_hz` at `rate_hz_per_s` (magnitude).
    Ramp {
        /// Where the ramp ends.
        to_hz: f64,
        /// |df/dt|.
        rate_hz_per_s: f64,
    },
    /// `centre + amplitude · sin(2π t / period)` for `periods` whole periods (t from the
    /// segment's start, so the sine starts at the centre going up).
    Sine {
        /// The centre frequency.
        centre_hz: f64,
        /// The amplitude.
        amplitude_hz: f64,
        /// The period.
        period_s: f64,
        /// How many whole periods.
        periods: u32,
    },
}

/// What a sequence tests (the evaluator picks its checks by this).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SequenceKind {
    /// Steps between holds; the stationary response of each hold and the activation times.
    Steps,
    /// Long holds at full activation.
    Endurance,
    /// The FCR-D ramp at 0.24 Hz/s, its performance and its deactivation.
    FcrDRamp,
    /// A sine test at one period (or several, one after the other).
    Sine,
    /// FFR step or ramp through the activation level `level_hz`.
    Ffr {
        /// The activation level sold (49.7 / 49.6 / 49.5 Hz).
        level_hz: f64,
    },
    /// LER energy management: NEM on and off.
    LerNem,
    /// LER energy management: AEM in the alert state.
    LerAem,
    /// A user profile (`--profile`): only the generic checks.
    Profile,
}

/// The longest sequence (in segments).
pub const MAX_SEGMENTS: usize = 32;

/// A named test sequence: segments from `start_hz`, plus what the run needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// The kebab-case name (`fcr-n-steps`, `sine-60s`, …).
    pub name: &'static str,
    /// What it tests.
    pub kind: SequenceKind,
    /// The frequency at t = 0.
    pub start_hz: f64,
    /// The pieces, in order.
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// The SOC the simulated battery starts at (%), chosen so the sequence shows what it
    /// tests (the LER sequences start near the NEM/AEM thresholds).
    pub initial_soc: f64,
}

/// One segment with its start time and start frequency resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placed {
    /// The segment.
    pub segment: Segment,
    /// When it starts (s).
    pub start_s: f64,
    /// Its duration (s).
    pub duration_s: f64,
    /// The frequency when it starts.
    pub from_hz: f64,
}

impl Placed {
    /// The frequency `dt` seconds into the segment.
    #[must_use]
    pub fn at(&self, dt: f64) -> f64 {
        match self.segment {
            Segment::Hold { hz, .. } => hz,
            Segment::Ramp { to_hz, .. } => {
                if self.duration_s <= 0.0 {
                    to_hz
                } else {
                    let x = (dt / self.duration_s).clamp(0.0, 1.0);
                    self.from_hz + (to_hz - self.from_hz) * x
                }
            }
            Segment::Sine { centre_hz, amplitude_hz, period_s, .. } => {
                centre_hz + amplitude_hz * (core::f64::consts::TAU * dt / period_s).sin()
            }
        }
    }

    /// The frequency at the segment's end.
    #[must_use]
    pub fn end_hz(&self) -> f64 {
        match self.segment {
            Segment::Hold { hz, .. } => hz,
            Segment::Ramp { to_hz, .. } => to_hz,
            Segment::Sine { centre_hz, .. } => centre_hz,
        }
    }
}

impl Sequence {
    fn new(name: &'static str, kind: SequenceKind, start_hz: f64, segments: &[Segment]) -> Self {
        let mut v = heapless::Vec::new();
        for s in segments.iter().take(MAX_SEGMENTS) {
            // Capacity is checked by `take`.
            let _ = v.push(*s);
        }
        Self { name, kind, start_hz, segments: v, initial_soc: 50.0 }
    }

    const fn with_soc(mut self, soc: f64) -> Self {
        self.initial_soc = soc;
        self
    }

    /// Every segment with its start time, duration and start frequency.
    pub fn placed(&self) -> impl Iterator<Item = Placed> + '_ {
        let mut t = 0.0;
        let mut f = self.start_hz;
        self.segments.iter().map(move |s| {
            let duration_s = match *s {
                Segment::Hold { secs, .. } => secs.max(0.0),
                Segment::Ramp { to_hz, rate_hz_per_s } => {
                    if rate_hz_per_s > 0.0 {
                        (to_hz - f).abs() / rate_hz_per_s
                    } else {
                        0.0
                    }
                }
                Segment::Sine { period_s, periods, .. } => period_s * f64::from(periods),
            };
            let p = Placed { segment: *s, start_s: t, duration_s, from_hz: f };
            t += duration_s;
            f = p.end_hz();
            p
        })
    }

    /// The total length (s).
    #[must_use]
    pub fn duration_s(&self) -> f64 {
        self.placed().last().map_or(0.0, |p| p.start_s + p.duration_s)
    }

    /// The injected frequency at `t` seconds (before 0: the start; after the end: the last
    /// value).
    #[must_use]
    pub fn frequency_at(&self, t: f64) -> f64 {
        let mut last = self.start_hz;
        for p in self.placed() {
            if t < p.start_s {
                return last;
            }
            if t < p.start_s + p.duration_s {
                return p.at(t - p.start_s);
            }
            last = p.end_hz();
        }
        last
    }

    /// The same sequence with every [`Segment::Hold`] longer than `from_s` shortened to
    /// `to_s` (the endurance holds on a shortened time scale; ramps, steps and sines keep
    /// their time scale).
    #[must_use]
    pub fn with_long_holds(mut self, from_s: f64, to_s: f64) -> Self {
        for s in &mut self.segments {
            if let Segment::Hold { secs, .. } = s {
                if *secs > from_s {
                    *secs = to_s;
                }
            }
        }
        self
    }
}

const fn hold(hz: f64, secs: f64) -> Segment {
    Segment::Hold { hz, secs }
}

/// The FCR-D ramp rate of the test program: 0.24 Hz/s.
pub const FCR_D_RAMP_HZ_PER_S: f64 = 0.24;
/// The sine amplitude of the test program: ±0.1 Hz.
pub const SINE_AMPLITUDE_HZ: f64 = 0.1;
/// The periods of the FCR-N sine tests (s).
pub const FCR_N_SINE_PERIODS: [u32; 10] = [10, 15, 25, 40, 50, 60, 70, 90, 150, 300];
/// The periods of the FCR-D sine tests (s).
pub const FCR_D_SINE_PERIODS: [u32; 7] = [10, 15, 25, 40, 50, 60, 70];
/// The endurance hold of FCR-N in each direction (s): 1 h, the LER energy reservation.
pub const FCR_N_ENDURANCE_S: f64 = 3600.0;
/// The endurance hold of FCR-D (s): 20 min, the C/3 h energy reservation.
pub const FCR_D_ENDURANCE_S: f64 = 1200.0;

const SINE_NAMES: [&str; 10] = [
    "sine-10s",
    "sine-15s",
    "sine-25s",
    "sine-40s",
    "sine-50s",
    "sine-60s",
    "sine-70s",
    "sine-90s",
    "sine-150s",
    "sine-300s",
];

/// How many whole periods a sine test runs: at least 5 and at least 2 min.
#[must_use]
pub fn sine_periods(period_s: u32) -> u32 {
    let by_time = 120_u32.div_ceil(period_s.max(1));
    by_time.max(5)
}

fn sine_centre(service: ServiceUnderTest) -> f64 {
    match service {
        // Inside the linear band, so the ±0.1 Hz sine is never clipped.
        ServiceUnderTest::FcrN | ServiceUnderTest::Ffr => NOMINAL_HZ,
        ServiceUnderTest::FcrDUp => 49.7,
        ServiceUnderTest::FcrDDown => 50.3,
    }
}

fn sine_sequence(service: ServiceUnderTest, name: &'static str, periods: &[u32]) -> Sequence {
    let centre = sine_centre(service);
    let mut segs = heapless::Vec::<Segment, MAX_SEGMENTS>::new();
    let _ = segs.push(hold(centre, 20.0));
    for &p in periods {
        let _ = segs.push(Segment::Sine {
            centre_hz: centre,
            amplitude_hz: SINE_AMPLITUDE_HZ,
            period_s: f64::from(p),
            periods: sine_periods(p),
        });
    }
    let _ = segs.push(hold(centre, 10.0));
    Sequence::new(name, SequenceKind::Sine, centre, &segs)
}

fn fcr_n(name: &str) -> Option<Sequence> {
    let n = NOMINAL_HZ;
    Some(match name {
        "fcr-n-steps" => Sequence::new(
            "fcr-n-steps",
            SequenceKind::Steps,
            n,
            &[
                hold(n, 30.0),
                hold(49.90, 60.0),
                hold(n, 60.0),
                hold(50.10, 60.0),
                hold(n, 60.0),
                hold(49.95, 60.0),
                hold(50.05, 60.0),
                hold(n, 60.0),
            ],
        ),
        "fcr-n-endurance" => Sequence::new(
            "fcr-n-endurance",
            SequenceKind::Endurance,
            n,
            &[
                hold(n, 30.0),
                hold(49.90, FCR_N_ENDURANCE_S),
                hold(n, 60.0),
                hold(50.10, FCR_N_ENDURANCE_S),
                hold(n, 60.0),
            ],
        ),
        // Start where the FCR-N endurance up is 33.6 min (4 h·C, SOC window 10–90 %): full
        // activation drains it below NEM's 30 min, then NEM refills it at 50 Hz.
        "ler-nem" => Sequence::new(
            "ler-nem",
            SequenceKind::LerNem,
            n,
            &[hold(n, 30.0), hold(49.90, 600.0), hold(n, 3600.0)],
        )
        .with_soc(24.0),
        // Endurance up 18 min; 49.85 Hz for 15 min is the alert state after 5 min.
        "ler-aem" => Sequence::new(
            "ler-aem",
            SequenceKind::LerAem,
            n,
            &[hold(n, 30.0), hold(49.85, 900.0), hold(n, 300.0)],
        )
        .with_soc(17.5),
        _ => return None,
    })
}

fn fcr_d(service: ServiceUnderTest, name: &str) -> Option<Sequence> {
    let up = service == ServiceUnderTest::FcrDUp;
    // Signed deviations toward the activating side.
    let s = if up { -1.0 } else { 1.0 };
    let n = NOMINAL_HZ;
    let edge = n + s * 0.1;
    let full = n + s * 0.5;
    let (steps, ramp, endurance) = if up {
        ("fcr-d-up-steps", "fcr-d-up-ramp", "fcr-d-up-endurance")
    } else {
        ("fcr-d-down-steps", "fcr-d-down-ramp", "fcr-d-down-endurance")
    };
    Some(if name == steps {
        Sequence::new(
            steps,
            SequenceKind::Steps,
            n,
            &[
                hold(n, 30.0),
                hold(n + s * 0.2, 60.0),
                hold(n + s * 0.3, 60.0),
                hold(full, 60.0),
                hold(n + s * 0.3, 60.0),
                hold(n, 60.0),
            ],
        )
    } else if name == ramp {
        Sequence::new(
            ramp,
            SequenceKind::FcrDRamp,
            n,
            &[
                hold(n, 20.0),
                hold(edge, 30.0),
                Segment::Ramp { to_hz: full, rate_hz_per_s: FCR_D_RAMP_HZ_PER_S },
                hold(full, 60.0),
                hold(edge, 60.0),
                hold(n, 20.0),
            ],
        )
    } else if name == endurance {
        Sequence::new(
            endurance,
            SequenceKind::Endurance,
            n,
            &[hold(n, 30.0), hold(full, FCR_D_ENDURANCE_S), hold(n, 60.0)],
        )
    } else {
        return None;
    })
}

fn ffr(name: &str) -> Option<Sequence> {
    let n = NOMINAL_HZ;
    let step = |name: &'static str, level: f64| {
        Sequence::new(
            name,
            SequenceKind::Ffr { level_hz: level },
            n,
            &[hold(n, 10.0), hold(level - 0.15, 20.0), hold(n, 30.0)],
        )
    };
    Some(match name {
        "ffr-step-49.7" => step("ffr-step-49.7", 49.7),
        "ffr-step-49.6" => step("ffr-step-49.6", 49.6),
        "ffr-step-49.5" => step("ffr-step-49.5", 49.5),
        // A fall of 0.5 Hz/s through the 49.5 Hz level (the fastest activation class).
        "ffr-ramp" => Sequence::new(
            "ffr-ramp",
            SequenceKind::Ffr { level_hz: 49.5 },
            n,
            &[
                hold(n, 10.0),
                Segment::Ramp { to_hz: 49.35, rate_hz_per_s: 0.5 },
                hold(49.35, 20.0),
                hold(n, 30.0),
            ],
        ),
        _ => return None,
    })
}

/// The names of the built-in sequences for `service`.
#[must_use]
pub fn names(service: ServiceUnderTest) -> heapless::Vec<&'static str, 24> {
    let mut v = heapless::Vec::new();
    let fixed: &[&'static str] = match service {
        ServiceUnderTest::FcrN => &["fcr-n-steps", "fcr-n-endurance", "ler-nem", "ler-aem"],
        ServiceUnderTest::FcrDUp => &["fcr-d-up-steps", "fcr-d-up-ramp", "fcr-d-up-endurance"],
        ServiceUnderTest::FcrDDown => &["fcr-d-down-steps", "fcr-d-down-ramp", "fcr-d-down-endurance"],
        ServiceUnderTest::Ffr => &["ffr-step-49.7", "ffr-step-49.6", "ffr-step-49.5", "ffr-ramp"],
    };
    for n in fixed {
        let _ = v.push(*n);
    }
    if service != ServiceUnderTest::Ffr {
        let count = if service == ServiceUnderTest::FcrN {
            FCR_N_SINE_PERIODS.len()
        } else {
            FCR_D_SINE_PERIODS.len()
        };
        for n in SINE_NAMES.iter().take(count) {
            let _ = v.push(*n);
        }
        let _ = v.push("sine-all");
    }
    v
}

/// The built-in sequence `name` for `service`, or `None` (an unknown name, or one that does
/// not belong to that service).
#[must_use]
pub fn builtin(service: ServiceUnderTest, name: &str) -> Option<Sequence> {
    let periods: &[u32] = match service {
        ServiceUnderTest::FcrN => &FCR_N_SINE_PERIODS,
        ServiceUnderTest::FcrDUp | ServiceUnderTest::FcrDDown => &FCR_D_SINE_PERIODS,
        ServiceUnderTest::Ffr => &[],
    };
    if !periods.is_empty() {
        if name == "sine-all" {
            return Some(sine_sequence(service, "sine-all", periods));
        }
        for (i, p) in periods.iter().enumerate() {
            if SINE_NAMES.get(i).is_some_and(|n| *n == name) {
                let n = SINE_NAMES.get(i).copied().unwrap_or("sine");
                return Some(sine_sequence(service, n, core::slice::from_ref(p)));
            }
        }
    }
    match service {
        ServiceUnderTest::FcrN => fcr_n(name),
        ServiceUnderTest::FcrDUp | ServiceUnderTest::FcrDDown => fcr_d(service, name),
        ServiceUnderTest::Ffr => ffr(name),
    }
}
