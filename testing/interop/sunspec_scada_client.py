#!/usr/bin/env python3
"""An independent SCADA client of the gateway's SunSpec Modbus server (issue #14 item 2):
pysunspec2 discovers the device (scan of the model chain from "SunS" at 40000) and reads
values; pymodbus checks exceptions; a control write (model 704 WSet, a short revert time)
takes effect through the control modes and the clamp and reverts.

Usage: sunspec_scada_client.py --port PORT --defs DIR
Prints one line per check ("OK name ..." or "FAIL name ...") and exits 1 on any failure.
"""
import argparse
import sys
import time

import sunspec2.device as sdev
import sunspec2.modbus.client as sclient
from pymodbus.client import ModbusTcpClient

failures = 0


def addr(model, point):
    """The absolute register address of a point (pysunspec2 offsets are model-relative)."""
    return model.model_addr + point.offset


def check(name, ok, detail=""):
    global failures
    print(("OK " if ok else "FAIL ") + name + (" " + str(detail) if detail else ""), flush=True)
    if not ok:
        failures += 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--defs", required=True)
    a = ap.parse_args()

    # The vendor model's definition ships with the gateway (api/data/sunspec).
    sdev.set_model_defs_path([a.defs, sdev.models_dir])
    d = sclient.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=a.port, timeout=5)
    d.scan()
    ids = [m.model_id for m in d.model_list]
    check("discover", ids == [1, 701, 702, 704, 713, 802, 64900], ids)
    check("no model errors", all(not m.error_info for m in d.model_list),
          [m.error_info for m in d.model_list if m.error_info])
    c = d.common[0]
    check("common", c.Md.cvalue == "ems-gateway" and c.SN.cvalue == "sim", (c.Mn.cvalue, c.Md.cvalue, c.SN.cvalue))

    # Wait until the loop runs.
    vendor = d.models[64900][0]
    until = time.time() + 30
    while True:
        vendor.read()
        if vendor.St.value == 2 or time.time() > until:
            break
        time.sleep(0.3)
    check("running", vendor.St.value == 2, vendor.St.value)
    m713 = d.models[713][0]
    m713.read()
    check("soc", m713.SoC.cvalue is not None and 0 < m713.SoC.cvalue <= 100, m713.SoC.cvalue)
    m702 = d.models[702][0]
    m702.read()
    check("rating", m702.WMaxRtg.cvalue == 5000, m702.WMaxRtg.cvalue)
    m701 = d.models[701][0]
    m701.read()
    check("ac power", m701.W.cvalue is not None, m701.W.cvalue)

    # Function code 4 mirrors 3: the same image (SunS and the static model 1) at the same addresses.
    mb = ModbusTcpClient("127.0.0.1", port=a.port)
    mb.connect()
    hr = mb.read_holding_registers(40000, count=70, device_id=1)
    ir = mb.read_input_registers(40000, count=70, device_id=1)
    check("fc4 mirrors fc3", not ir.isError() and not hr.isError() and ir.registers == hr.registers,
          (ir, hr))
    r = mb.read_input_registers(0, count=1, device_id=1)
    check("fc4 outside the map refused", r.isError() and getattr(r, "exception_code", None) == 2, r)

    # Outside the allow-list: 702 WMax (RW in SunSpec, not writable here) → exception 2.
    r = mb.write_register(addr(m702, m702.WMax), 100, device_id=1)
    check("write outside allow-list refused", r.isError() and getattr(r, "exception_code", None) == 2, r)
    # 704 WSetEna = 2 is not a value of the enum → exception 3.
    ctl = d.models[704][0]
    ctl.read()
    r = mb.write_register(addr(ctl, ctl.WSetEna), 2, device_id=1)
    check("illegal value refused", r.isError() and getattr(r, "exception_code", None) == 3, r)

    # Force charge 9000 W (beyond the 5 kW inverter): the API refuses it (> the rating) → 3.
    ctl.WSet.cvalue = -9000
    ctl.WSetRvrtTms.value = 3
    ctl.WSetEna.value = 1
    try:
        ctl.write()
        check("over-rating set-point refused", False)
    except Exception as e:  # pysunspec2 raises on the exception response
        check("over-rating set-point refused", "3" in str(e), e)

    # Charge at 4000 W for 3 s: the command follows (through the clamp), then reverts.
    ctl.read()
    ctl.WSet.cvalue = -4000
    ctl.WSetRvrtTms.value = 3
    ctl.WSetEna.value = 1
    ctl.write()
    ctl.read()
    check("applied read back", ctl.WSetEna.value == 1 and ctl.WSet.cvalue == -4000 and 0 < ctl.WSetRvrtRem.value <= 3,
          (ctl.WSetEna.value, ctl.WSet.cvalue, ctl.WSetRvrtRem.value))
    until = time.time() + 2.5
    seen = None
    while time.time() < until:
        vendor.read()
        seen = (vendor.CmdSrc.value, vendor.WCmd.cvalue, vendor.WChaLim.cvalue)
        if vendor.CmdSrc.value == 5 and vendor.WCmd.cvalue < 0:
            break
        time.sleep(0.2)
    check("command source override", seen is not None and seen[0] == 5, seen)
    # The commanded power never exceeds the envelope's charge limit (the clamp), and moves
    # toward the request.
    check("clamped command", seen is not None and -4000 - 1 <= seen[1] < 0 and -seen[1] <= seen[2] + 1, seen)
    time.sleep(3.5)
    ctl.read()
    vendor.read()
    check("reverted", ctl.WSetEna.value == 0 and ctl.WSetRvrtRem.value == 0 and vendor.CmdSrc.value != 5,
          (ctl.WSetEna.value, ctl.WSetRvrtRem.value, vendor.CmdSrc.value))

    # Heartbeat: the server's counts, the controller's is echoed.
    vendor.read()
    hb1 = vendor.Hb.value
    r = mb.write_register(addr(vendor, vendor.CtrlHb), 42, device_id=1)
    check("heartbeat write", not r.isError(), r)
    time.sleep(1.2)
    vendor.read()
    check("heartbeats", vendor.Hb.value != hb1 and vendor.CtrlHb.value == 42, (hb1, vendor.Hb.value, vendor.CtrlHb.value))
    mb.close()
    d.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
