#!/usr/bin/env python3
"""A simulated OCPP 1.6J charge point for the interoperability tests (devices/tests/ocpp_interop.rs).

Built on the independent PyPI `ocpp` package (pinned in scripts/test) over `websockets`. It keeps
the charging profiles the central system sets, computes its own composite schedule (stack levels,
purposes, validity by start and duration, the station maximum), answers GetCompositeSchedule
with it and charges a simulated car at that limit, sending MeterValues. Every step is printed as
one JSON line on stdout for the test to read.

Modes: `normal`; `ignore-zero` (a firmware fault: a limit below 6 A is accepted but the car keeps
charging at its previous current). After the link is lost the charge point keeps running for
`--linger` seconds, then prints the limit in force (`offline_limit`) and exits.
"""

import argparse
import asyncio
import datetime
import json
import sys

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as Cp
from ocpp.v16 import call, call_result

MIN_CURRENT = 6.0
VOLTS = 230.0


def emit(**kw):
    print(json.dumps(kw), flush=True)


def parse_time(s):
    if not s:
        return None
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def now():
    return datetime.datetime.now(datetime.timezone.utc).timestamp()


class SimChargePoint(Cp):
    def __init__(self, cp_id, ws, args):
        super().__init__(cp_id, ws)
        self.args = args
        self.profiles = {}  # (connector, profile id) -> (profile dict, received at)
        self.transaction = None
        self.energy = 1000.0
        self.current = 0.0
        self.pending_start = None

    # ---- composite schedule -------------------------------------------------------------
    def valid(self, prof, received, t):
        sched = prof["charging_schedule"]
        start = parse_time(sched.get("start_schedule")) or received
        dur = sched.get("duration")
        if t < start - 1.0:
            return False
        return dur is None or t < start + float(dur)

    def best(self, purpose, t, tx=None):
        cands = []
        for (conn, _pid), (prof, received) in self.profiles.items():
            if prof["charging_profile_purpose"] != purpose or not self.valid(prof, received, t):
                continue
            if purpose == "TxProfile" and prof.get("transaction_id") != tx:
                continue
            cands.append(prof)
        if not cands:
            return None
        top = max(cands, key=lambda p: p["stack_level"])
        return float(top["charging_schedule"]["charging_schedule_period"][0]["limit"])

    def composite(self, t=None):
        t = now() if t is None else t
        limit = None
        if self.transaction is not None:
            limit = self.best("TxProfile", t, self.transaction)
        if limit is None:
            limit = self.best("TxDefaultProfile", t)
        station = self.best("ChargePointMaxProfile", t)
        if station is not None:
            limit = station if limit is None else min(limit, station)
        return limit

    # ---- central system -> charge point ---------------------------------------------------
    @on("SetChargingProfile")
    async def on_set_charging_profile(self, connector_id, cs_charging_profiles, **kw):
        prof = cs_charging_profiles
        purpose = prof["charging_profile_purpose"]
        if purpose == "TxProfile" and prof.get("transaction_id") != self.transaction:
            return call_result.SetChargingProfile(status="Rejected")
        self.profiles[(connector_id, prof["charging_profile_id"])] = (prof, now())
        emit(event="profile", purpose=purpose, stack=prof["stack_level"],
             limit=float(prof["charging_schedule"]["charging_schedule_period"][0]["limit"]))
        return call_result.SetChargingProfile(status="Accepted")

    @on("GetCompositeSchedule")
    async def on_get_composite_schedule(self, connector_id, duration, charging_rate_unit=None, **kw):
        limit = self.composite()
        if limit is None:
            return call_result.GetCompositeSchedule(status="Accepted", connector_id=connector_id)
        emit(event="composite", limit=limit)
        return call_result.GetCompositeSchedule(
            status="Accepted",
            connector_id=connector_id,
            schedule_start=datetime.datetime.now(datetime.timezone.utc).isoformat(),
            charging_schedule={
                "duration": duration,
                "charging_rate_unit": "A",
                "charging_schedule_period": [{"start_period": 0, "limit": limit}],
            },
        )

    @on("RemoteStartTransaction")
    async def on_remote_start(self, id_tag, connector_id=None, **kw):
        self.pending_start = id_tag
        return call_result.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    async def on_remote_stop(self, transaction_id, **kw):
        if transaction_id != self.transaction:
            return call_result.RemoteStopTransaction(status="Rejected")
        self.pending_stop = True
        return call_result.RemoteStopTransaction(status="Accepted")

    # ---- charge point -> central system ---------------------------------------------------
    async def status(self, s):
        await self.call(call.StatusNotification(connector_id=1, error_code="NoError", status=s))
        emit(event="status", status=s)

    async def run(self):
        boot = await self.call(call.BootNotification(charge_point_model="SimCP", charge_point_vendor="EMS-test"))
        emit(event="boot", status=boot.status, interval=boot.interval)
        asyncio.create_task(self.heartbeats(max(1, int(boot.interval))))
        await self.status("Available")
        await asyncio.sleep(0.2)
        await self.status("Preparing")  # a car is plugged in
        self.pending_stop = False
        while True:
            if self.pending_start is not None:
                tag, self.pending_start = self.pending_start, None
                auth = await self.call(call.Authorize(id_tag=tag))
                conf = await self.call(call.StartTransaction(
                    connector_id=1, id_tag=tag, meter_start=int(self.energy),
                    timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat()))
                self.transaction = conf.transaction_id
                emit(event="started", transaction=self.transaction, auth=auth.id_tag_info["status"])
                await self.status("Charging")
            if self.pending_stop and self.transaction is not None:
                self.pending_stop = False
                await self.call(call.StopTransaction(
                    transaction_id=self.transaction, meter_stop=int(self.energy),
                    timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat()))
                emit(event="stopped", transaction=self.transaction, energy=self.energy)
                self.transaction = None
                self.current = 0.0
                await self.status("Finishing")
            await self.meter_tick()
            await asyncio.sleep(self.args.meter_interval)

    def step_physics(self, dt):
        limit = self.composite()
        limit = 32.0 if limit is None else limit
        if self.transaction is None:
            self.current = 0.0
        elif limit < MIN_CURRENT:
            if self.args.mode != "ignore-zero":
                self.current = 0.0
        else:
            self.current = min(limit, self.args.car_max)
        power = self.current * VOLTS * self.args.phases
        self.energy += power * dt / 3600.0
        return limit, power

    async def meter_tick(self):
        limit, power = self.step_physics(self.args.meter_interval)
        emit(event="meter", limit=limit, current=self.current, power=power)
        if self.transaction is None:
            return
        phases = ["L1", "L2", "L3"][: self.args.phases]
        samples = [{"value": f"{power:.1f}", "measurand": "Power.Active.Import", "unit": "W"},
                   {"value": f"{self.energy:.1f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]
        samples += [{"value": f"{self.current:.1f}", "measurand": "Current.Import", "phase": p, "unit": "A"}
                    for p in phases]
        await self.call(call.MeterValues(connector_id=1, transaction_id=self.transaction, meter_value=[{
            "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "sampled_value": samples}]))

    async def heartbeats(self, interval):
        while True:
            await asyncio.sleep(interval)
            await self.call(call.Heartbeat())
            emit(event="heartbeat")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--id", required=True)
    ap.add_argument("--mode", default="normal", choices=["normal", "ignore-zero"])
    ap.add_argument("--meter-interval", type=float, default=0.5)
    ap.add_argument("--car-max", type=float, default=16.0)
    ap.add_argument("--phases", type=int, default=3)
    ap.add_argument("--linger", type=float, default=0.0)
    args = ap.parse_args()
    async with websockets.connect(f"{args.url}/{args.id}", subprotocols=["ocpp1.6"]) as ws:
        emit(event="connected", subprotocol=ws.subprotocol)
        cp = SimChargePoint(args.id, ws, args)
        try:
            await asyncio.gather(cp.start(), cp.run())
        except websockets.exceptions.ConnectionClosed:
            pass
    emit(event="link_lost")
    # The link is gone: the charge point keeps applying its own profiles.
    t = 0.0
    while t < args.linger:
        await asyncio.sleep(0.5)
        t += 0.5
        limit, power = cp.step_physics(0.5)
        emit(event="offline", limit=limit, power=power)
    emit(event="offline_limit", limit=cp.composite())


if __name__ == "__main__":
    try:
        import ocpp  # noqa: F401
    except ImportError:
        sys.exit(3)
    asyncio.run(main())
