//! The planner thread: owns the price feed, feeds the live-economics engine with the loop's
//! measurements, evaluates the operator rules every second, re-plans when due, audits every
//! decision and persists what it learned. It never runs on the control thread and never
//! blocks it: it answers on a bounded channel the loop reads with `try_recv`.

use super::hook::LoopEconomics;
use super::messages::{ActiveRule, LoopPlan, LoopSlot, SiteClock, ToLoop, ToPlanner};
use super::port::Port;
use super::shared::{locate, lock, Core, FeedView, Shared};
use crate::config::EconomicsWiring;
use crate::error::LiveError;
use ems_api::db::Db;
use ems_api::ports::{AuditEntry, Outcome};
use ems_api::start::LoopAudit;
use ems_strategies::forecast::PvSystem;
use ems_strategies::live::{
    LiveConfig, LiveEconomics, LiveState, Measured, PriceBasis, ReplanReason, SpotStatus,
};
use ems_strategies::prices::{FeedEvent, FeedStatus, PriceFeed, PushHandle};
use ems_strategies::rules::{RuleContext, RuleEngine, RuleSet};
use ems_strategies::Ratio;
use jiff::Timestamp;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The key of the learned state in the database's `documents` table.
pub(super) const STATE_KEY: &str = "economics.live";

/// How often the learned state is saved (and once more at the end).
const SAVE_EVERY: Duration = Duration::from_secs(300);

/// How often the Open-Meteo irradiance forecast is fetched.
const IRRADIANCE_EVERY: Duration = Duration::from_secs(3600);

/// Bound of the loop → planner channel: a minute of ticks and samples with room to spare.
const TO_PLANNER: usize = 256;

/// How live economics is started.
#[derive(Debug, Clone)]
pub(crate) struct EconomicsStart {
    /// `[economics]`, validated.
    pub wiring: EconomicsWiring,
    /// How site time follows control time.
    pub clock: SiteClock,
    /// The state file (the learned state is kept beside it when there is no database).
    pub state_file: PathBuf,
}

/// Live economics before its thread runs: the shared state (for the API's port) and what the
/// thread will own.
#[derive(Debug)]
pub(crate) struct Planner {
    shared: Shared,
    feed: PriceFeed,
    push: Option<PushHandle>,
    clock: SiteClock,
    state_file: PathBuf,
}

/// The engine's configuration; the planner's powers are capped at the inverter's `rating` once
/// the device has reported it (the envelope's static limit that the site file does not hold).
fn engine_config(w: &EconomicsWiring, rating: Option<ems_core::Watts>) -> Result<LiveConfig, LiveError> {
    let pv = PvSystem::new(w.latitude, w.longitude, w.pv_tilt, w.pv_azimuth, w.pv_peak)
        .map_err(|e| LiveError::Economics(format!("PV array: {e}")))?;
    let mut problem = w.problem;
    if let Some(r) = rating.filter(|r| r.get() > 0.0) {
        problem.charge_max_w = problem.charge_max_w.min(r);
        problem.discharge_max_w = problem.discharge_max_w.min(r);
    }
    let mut cfg = LiveConfig::new(w.tariff.clone(), pv, problem);
    cfg.replan_every = w.replan;
    cfg.horizon = w.horizon;
    cfg.soc_off_plan = w.soc_off_plan;
    cfg.plan_margin = w.plan_margin;
    cfg.pv_factor = w.pv_factor;
    cfg.load_factor = w.load_factor;
    Ok(cfg)
}

/// A feed event in the audit log's words.
fn describe(e: &FeedEvent) -> String {
    match e {
        FeedEvent::Updated { kind, points, first, last } => match (first, last) {
            (Some(f), Some(l)) => {
                format!("{} prices updated: {points} points from {f} to {l}", kind.as_str())
            }
            _ => format!("{} prices updated: {points} points", kind.as_str()),
        },
        FeedEvent::Failed { kind, error } => format!(
            "{} prices failed (the last good prices stay in use until they end): {error}",
            kind.as_str()
        ),
        FeedEvent::StatusChanged { from, to } => format!("price status {from} -> {to}"),
    }
}

/// The rule set of the rules file, located at the site and in its time zone.
fn load_rules(w: &EconomicsWiring) -> Result<Option<RuleSet>, LiveError> {
    let Some(path) = &w.rules else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| LiveError::Economics(format!("rules file {}: {e}", path.display())))?;
    let set = RuleSet::from_toml(&text)
        .map_err(|e| LiveError::Economics(format!("rules file {}: {e}", path.display())))?;
    Ok(Some(locate(set, w)))
}

impl Planner {
    /// Build the engine (not yet restored), the price feed and the rules.
    ///
    /// # Errors
    /// A price source, the PV array or the rules file is invalid.
    pub(crate) fn new(start: EconomicsStart) -> Result<Self, LiveError> {
        let EconomicsStart { wiring, clock, state_file } = start;
        let feed = PriceFeed::from_configs(&wiring.prices, &wiring.base_dir)
            .map_err(|e| LiveError::Economics(e.to_string()))?;
        let push = feed.push_handle();
        let engine = LiveEconomics::new(engine_config(&wiring, None)?, None)
            .map_err(|e| LiveError::Economics(e.to_string()))?;
        let rules = load_rules(&wiring)?;
        let rules_json = rules.as_ref().map_or_else(|| serde_json::json!({"rules": []}), RuleSet::to_json);
        let rules = rules
            .map(RuleEngine::new)
            .transpose()
            .map_err(|e| LiveError::Economics(format!("rules: {e}")))?;
        let core = Core {
            engine,
            feed: FeedView::default(),
            rules,
            rules_json,
            decision: None,
            tick: None,
            wiring,
            rules_changed: false,
            clock,
            rating: None,
        };
        Ok(Self { shared: Arc::new(Mutex::new(core)), feed, push, clock, state_file })
    }

    /// The site's next sunset after a time (control modes `"until": "sunset"`), from the
    /// `[economics]` location and time zone.
    pub(crate) fn sunsets(&self) -> impl Fn(Timestamp) -> Option<Timestamp> + Send + Sync + 'static {
        let (location, tz) = {
            let core = lock(&self.shared);
            (
                ems_strategies::rules::Location::try_new(core.wiring.latitude, core.wiring.longitude).ok(),
                core.wiring.time_zone.clone(),
            )
        };
        move |after| location.and_then(|l| ems_strategies::rules::sun::next_sunset(after, l, &tz))
    }

    /// The API's port onto this planner.
    pub(crate) fn port(&self) -> Arc<dyn ems_api::economics::EconomicsPort> {
        Arc::new(Port::new(self.shared.clone(), self.push.clone()))
    }

    /// Restore what was learned, then start the thread. Returns the loop's handle and the
    /// thread's.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(crate) fn spawn(
        self,
        audit: Option<LoopAudit>,
        db: Option<Arc<Db>>,
    ) -> Result<(LoopEconomics, PlannerThread), LiveError> {
        let store = StateStore { db, file: sibling(&self.state_file, "economics.json") };
        let mut thread = PlannerLoop {
            shared: self.shared,
            feed: self.feed,
            audit,
            store,
            to_loop: None,
            last_rule: None,
            last_save: Instant::now(),
            last_irradiance: None,
            stop: Arc::new(AtomicBool::new(false)),
        };
        thread.restore();
        let (to_planner, from_loop) = mpsc::sync_channel(TO_PLANNER);
        // Plans and rule changes are rare: a handful in flight at most.
        let (to_loop, from_planner) = mpsc::sync_channel(16);
        thread.to_loop = Some(to_loop);
        let stop = thread.stop.clone();
        let handle = std::thread::Builder::new()
            .name("ems-planner".to_owned())
            .spawn(move || thread.run(&from_loop))
            .map_err(LiveError::Runtime)?;
        Ok((
            LoopEconomics::new(self.clock, to_planner, from_planner),
            PlannerThread { handle: Some(handle), stop },
        ))
    }
}

/// The running planner thread.
#[derive(Debug)]
pub(crate) struct PlannerThread {
    handle: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl PlannerThread {
    /// Ask the thread to save what it learned and stop, and wait for it (a price fetch in
    /// flight ends by its own timeout).
    pub(crate) fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() {
                tracing::error!("economics: the planner thread panicked");
            }
        }
    }
}

fn sibling(path: &std::path::Path, suffix: &str) -> PathBuf {
    crate::store::with_suffix(path, &format!(".{suffix}"))
}

/// Where the learned state is kept: the database when there is one, else a JSON file beside
/// the state file (written atomically).
#[derive(Debug)]
struct StateStore {
    db: Option<Arc<Db>>,
    file: PathBuf,
}

impl StateStore {
    fn load(&self) -> Result<Option<String>, String> {
        match &self.db {
            Some(db) => db.document(STATE_KEY).map_err(|e| e.to_string()),
            None => match std::fs::read_to_string(&self.file) {
                Ok(t) => Ok(Some(t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("{}: {e}", self.file.display())),
            },
        }
    }

    fn save(&self, key: &str, json: &str) -> Result<(), String> {
        match &self.db {
            Some(db) => db.put_document(key, json, Timestamp::now()).map_err(|e| e.to_string()),
            None => {
                let file = if key == STATE_KEY { self.file.clone() } else { sibling(&self.file, key) };
                let tmp = sibling(&file, "tmp");
                std::fs::write(&tmp, json)
                    .and_then(|()| std::fs::rename(&tmp, &file))
                    .map_err(|e| format!("{}: {e}", file.display()))
            }
        }
    }
}

/// The thread's own state.
struct PlannerLoop {
    shared: Shared,
    feed: PriceFeed,
    audit: Option<LoopAudit>,
    store: StateStore,
    to_loop: Option<SyncSender<ToLoop>>,
    last_rule: Option<ActiveRule>,
    last_save: Instant,
    last_irradiance: Option<Instant>,
    stop: Arc<AtomicBool>,
}

impl PlannerLoop {
    fn audit(&self, action: &str, outcome: Outcome, detail: String) {
        tracing::info!(target: "audit", "economics: {action}: {detail}");
        if let Some(a) = &self.audit {
            let entry = AuditEntry {
                seq: 0,
                at: Timestamp::now(),
                actor: "economics".to_owned(),
                action: format!("economics.{action}"),
                outcome,
                detail,
            };
            a.append_safety(&entry);
        }
    }

    /// Restore the learned state; a stored state that does not fit is kept aside (never lost)
    /// and the engine starts fresh.
    fn restore(&mut self) {
        let text = match self.store.load() {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                self.audit("restore", Outcome::Failed, format!("cannot read the learned state: {e}"));
                return;
            }
        };
        let restored =
            serde_json::from_str::<LiveState>(&text).map_err(|e| e.to_string()).and_then(|state| {
                let core = lock(&self.shared);
                let cfg = engine_config(&core.wiring, core.rating).map_err(|e| e.to_string())?;
                LiveEconomics::new(cfg, Some(state)).map_err(|e| e.to_string())
            });
        match restored {
            Ok(engine) => {
                lock(&self.shared).engine = engine;
                self.audit(
                    "restore",
                    Outcome::Ok,
                    "learned load profiles, PV ratio and ledgers restored".to_owned(),
                );
            }
            Err(e) => {
                let aside = format!("{STATE_KEY}.rejected.{}", Timestamp::now().as_second());
                let kept = self.store.save(&aside, &text);
                self.audit(
                    "restore",
                    Outcome::Failed,
                    format!("the stored state does not fit ({e}); starting fresh, the old state kept as '{aside}' ({kept:?})"),
                );
            }
        }
    }

    fn save(&mut self) {
        self.last_save = Instant::now();
        let state = lock(&self.shared).engine.state();
        match serde_json::to_string(&state) {
            Ok(json) => {
                if let Err(e) = self.store.save(STATE_KEY, &json) {
                    self.audit("save", Outcome::Failed, e);
                }
            }
            Err(e) => self.audit("save", Outcome::Failed, e.to_string()),
        }
    }

    fn run(mut self, from_loop: &Receiver<ToPlanner>) {
        let mut next_step = Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let wait = next_step.saturating_duration_since(Instant::now());
            match from_loop.recv_timeout(wait.min(Duration::from_millis(200))) {
                Ok(msg) => self.receive(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(msg) = from_loop.try_recv() {
                self.receive(msg);
            }
            if Instant::now() >= next_step {
                next_step = Instant::now() + Duration::from_secs(1);
                self.step();
            }
            if self.last_save.elapsed() >= SAVE_EVERY {
                self.save();
            }
        }
        self.save();
    }

    fn receive(&mut self, msg: ToPlanner) {
        let mut core = lock(&self.shared);
        match msg {
            ToPlanner::Tick(t) => {
                // The operator changed the default mode, or a control mode started or ended:
                // the plan's assumptions changed.
                let is_override =
                    |s: ems_control::CommandSource| matches!(s, ems_control::CommandSource::Override(_));
                if let Some(prev) = core.tick {
                    if prev.mode != t.mode || is_override(prev.source) != is_override(t.source) {
                        core.engine.request_replan(ReplanReason::ModeChange);
                    }
                }
                core.tick = Some(t);
                if t.rating.get() > 0.0 && core.rating != Some(t.rating) {
                    rerate(&mut core, t.rating);
                }
            }
            ToPlanner::Sample(s) => {
                let m = Measured {
                    grid: s.grid,
                    pv: s.pv,
                    battery: s.battery,
                    soc: s.soc.and_then(|p| Ratio::try_new(f64::from(p) / 100.0).ok()),
                };
                if let Err(e) = core.engine.observe(s.at, s.dt, &m) {
                    tracing::warn!("economics: measurement refused: {e}");
                }
            }
        }
    }

    /// Once a second: prices, irradiance, rules, re-planning, events.
    fn step(&mut self) {
        let Some(now) = lock(&self.shared).tick.map(|t| t.at) else { return };
        // Price fetches may take seconds: outside the lock.
        let events = self.feed.poll(now);
        let new_prices = events.iter().any(|e| matches!(e, FeedEvent::Updated { .. }));
        for e in &events {
            let outcome = if matches!(e, FeedEvent::Failed { .. }) { Outcome::Failed } else { Outcome::Ok };
            self.audit("prices", outcome, describe(e));
        }
        let irradiance = self.irradiance();
        let shared = Arc::clone(&self.shared);
        let mut core = lock(&shared);
        let status = self.feed.status(now);
        let changed = core.feed.status != Some(status);
        core.feed = FeedView { status: Some(status), sources: self.feed.sources() };
        // The engine learns of new points or a new status, not of every second: a series that
        // merely starts a quarter-hour later is no news (and must not look like new prices).
        if new_prices || changed {
            let live = if matches!(status, FeedStatus::Live { .. }) {
                SpotStatus::Live
            } else {
                SpotStatus::LastGood
            };
            if let Err(e) = core.engine.set_spot(self.feed.series(now), live) {
                tracing::warn!("economics: prices refused: {e}");
            }
        }
        if new_prices {
            core.engine.request_replan(ReplanReason::NewPrices);
        }
        if let Some(points) = irradiance {
            core.engine.set_irradiance(points);
        }
        self.rules(&mut core, now);
        let soc = core.tick.and_then(|t| t.soc).and_then(|p| Ratio::try_new(f64::from(p) / 100.0).ok());
        if let (Some(reason), Some(soc)) = (core.engine.replan_due(now, soc), soc) {
            let plan = match core.engine.replan(now, soc) {
                Ok(_) => loop_plan(&core.engine, core.wiring.replan),
                Err(e) => {
                    tracing::warn!("economics: planning ({reason}) failed: {e}");
                    None
                }
            };
            self.send(ToLoop::Plan(plan.map(Arc::new)));
        }
        let events = core.engine.take_events(now);
        drop(core);
        for e in events {
            let outcome = if matches!(e, ems_strategies::live::LiveEvent::PlanFailed { .. }) {
                Outcome::Failed
            } else {
                Outcome::Ok
            };
            self.audit("plan", outcome, e.to_string());
        }
    }

    /// Evaluate the rules (a changed set first re-plans); a new winner goes to the loop and
    /// is audited with its reasons.
    fn rules(&mut self, core: &mut Core, now: Timestamp) {
        if core.rules_changed {
            core.rules_changed = false;
            core.engine.request_replan(ReplanReason::RuleChange);
        }
        let tick = core.tick;
        let price = core.engine.import_price(now);
        let problem = core.wiring.problem;
        let Some(engine) = core.rules.as_mut() else {
            core.decision = None;
            if self.last_rule.take().is_some() {
                self.send(ToLoop::Rule(None));
            }
            return;
        };
        let ctx = RuleContext {
            at: now,
            price,
            soc: tick.and_then(|t| t.soc).and_then(|p| ems_core::Percent::try_new(p).ok()),
            pv_surplus: tick.map_or(ems_core::Watts::ZERO, |t| {
                t.pv - (t.grid + t.pv + t.battery).max(ems_core::Watts::ZERO)
            }),
            grid_import: tick.map_or(ems_core::Watts::ZERO, |t| t.grid),
            capacity: Some(problem.capacity_wh),
            max_charge: problem.charge_max_w,
        };
        let decision = engine.evaluate(&ctx);
        let active = match (&decision.winner, decision.rule_target()) {
            (Some((name, _)), Some(target)) => Some(ActiveRule { target, name: name.clone() }),
            _ => None,
        };
        if active != self.last_rule {
            let detail = match &active {
                Some(r) => format!(
                    "rule '{}' wins: {} (fired: {})",
                    r.name,
                    r.target.action.kind(),
                    decision.fired.join(", ")
                ),
                None => "no rule active".to_owned(),
            };
            self.audit("rule", Outcome::Ok, detail);
            core.engine.request_replan(ReplanReason::RuleChange);
            self.last_rule.clone_from(&active);
            self.send(ToLoop::Rule(active));
        }
        core.decision = Some(decision);
    }

    /// The Open-Meteo forecast, once an hour, when configured.
    fn irradiance(&mut self) -> Option<Vec<(Timestamp, ems_strategies::WattsPerSquareMetre)>> {
        let url = lock(&self.shared).wiring.irradiance_url.clone()?;
        if self.last_irradiance.is_some_and(|t| t.elapsed() < IRRADIANCE_EVERY) {
            return None;
        }
        self.last_irradiance = Some(Instant::now());
        let fetched = ems_strategies::prices::get_text(&url)
            .and_then(|text| ems_strategies::live::parse_open_meteo(&text).map_err(|e| e.to_string()));
        match fetched {
            Ok(points) => Some(points),
            Err(e) => {
                self.audit("irradiance", Outcome::Failed, format!("{url}: {e}"));
                None
            }
        }
    }

    fn send(&self, msg: ToLoop) {
        if let Some(tx) = &self.to_loop {
            if tx.try_send(msg).is_err() {
                tracing::warn!("economics: the control loop did not take the last update yet");
            }
        }
    }
}

/// The inverter reported its rating: the planner's model is rebuilt with its powers capped
/// there, keeping everything learned, and plans again.
fn rerate(core: &mut Core, rating: ems_core::Watts) {
    core.rating = Some(rating);
    let rebuilt = engine_config(&core.wiring, core.rating)
        .map_err(|e| e.to_string())
        .and_then(|cfg| LiveEconomics::new(cfg, Some(core.engine.state())).map_err(|e| e.to_string()));
    match rebuilt {
        Ok(engine) => {
            // The spot prices come back with the next step (a forgotten status counts as a
            // change); the plan is made again now.
            core.engine = engine;
            core.feed.status = None;
            core.engine.request_replan(ReplanReason::Start);
        }
        Err(e) => tracing::warn!("economics: the planner's model at rating {rating}: {e}"),
    }
}

/// The engine's plan as the loop needs it (no plan under a self-consumption basis); it expires
/// two re-planning intervals after it was made.
fn loop_plan(engine: &LiveEconomics, replan: jiff::SignedDuration) -> Option<LoopPlan> {
    let plan = engine.plan()?;
    if matches!(plan.basis, PriceBasis::SelfConsumption) || plan.slots.is_empty() || !plan.acted_on {
        return None;
    }
    Some(LoopPlan {
        slots: plan
            .slots
            .iter()
            .map(|s| LoopSlot {
                start: s.start,
                end: s.end,
                battery: s.battery,
                // A self-consumption slot runs the controller's self-consumption loop.
                grid: if s.self_consumption { ems_core::Watts::ZERO } else { s.grid },
            })
            .collect(),
        expires_at: plan.created_at.checked_add(replan * 2).unwrap_or(Timestamp::MAX),
    })
}
