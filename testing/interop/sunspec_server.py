#!/usr/bin/env python3
"""An independent SunSpec device for interoperability tests: pymodbus serves a SunSpec register
image built from the official model definitions (devices/data/sunspec/model_*.json).

Usage: sunspec_server.py --port N [--quirk NAME]... ; prints "READY <port>" once listening.

Quirks reproduce ways real devices deviate from the spec:
  base0           the SunS marker at address 0 instead of 40000
  sf-zero         scale factors of 0 (values are then plain integers)
  short-common    model 1 with a shorter length than the definition
  no-nameplate    model 120 missing from the chain
  battery         a battery (model 802: 16 LFP cells, 52.8 V, SOC 50 %, 100 A limits)
  soc-250         with battery: the SoC register holds 250 %
  cell-minus-3v   with battery: CellVMin holds -3.000 V written as a signed value into the
                  unsigned register (reads as 62.536 V)
The image is mutable: writes to any existing register succeed; reads or writes outside the image
answer with Modbus exception 0x02 (illegal data address).
"""
import argparse
import warnings
import asyncio
import json
import os
import struct
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusServerContext, ModbusSparseDataBlock
from pymodbus.server import StartAsyncTcpServer

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "..", "devices", "data", "sunspec")

NOT_IMPL = {
    "int16": 0x8000, "sunssf": 0x8000, "uint16": 0xFFFF, "enum16": 0xFFFF, "bitfield16": 0xFFFF,
    "acc16": 0x0000, "count": 0, "pad": 0x8000,
}


def load(model_id):
    with open(os.path.join(MODELS, f"model_{model_id}.json")) as f:
        return json.load(f)


def layout(model_id):
    """Top-level points of a model (repeating groups are left out of this test device):
    name -> (offset from the model's ID register, size, type)."""
    g = load(model_id)["group"]
    out, off = {}, 0
    for p in g["points"]:
        out[p["name"]] = (off, p.get("size", 1), p["type"])
        off += p.get("size", 1)
    return out, off


def encode(value, typ, size):
    if typ == "string":
        b = value.encode()[: size * 2].ljust(size * 2, b"\0")
        return list(struct.unpack(f">{size}H", b))
    if typ in ("int16", "sunssf"):
        return [value & 0xFFFF]
    if typ in ("uint16", "enum16", "bitfield16", "acc16", "count"):
        return [value & 0xFFFF]
    if typ in ("uint32", "acc32", "enum32", "bitfield32"):
        return [(value >> 16) & 0xFFFF, value & 0xFFFF]
    if typ == "int32":
        v = value & 0xFFFFFFFF
        return [(v >> 16) & 0xFFFF, v & 0xFFFF]
    if typ == "float32":
        hi, lo = struct.unpack(">HH", struct.pack(">f", value))
        return [hi, lo]
    raise ValueError(f"unsupported type {typ}")


def model_block(model_id, values, length=None):
    pts, total = layout(model_id)
    regs = [0] * total
    for name, (off, size, typ) in pts.items():
        if typ in NOT_IMPL and size == 1:
            regs[off] = NOT_IMPL[typ]
        elif typ in ("uint32", "acc32", "enum32", "bitfield32"):
            regs[off:off + 2] = [0xFFFF, 0xFFFF]
        elif typ == "int32":
            regs[off:off + 2] = [0x8000, 0x0000]
    for name, v in values.items():
        off, size, typ = pts[name]
        regs[off:off + size] = encode(v, typ, size)
    regs[0] = model_id
    body_len = total - 2
    regs[1] = body_len if length is None else length
    if length is not None:
        regs = regs[: 2 + length]
    return regs


def build(quirks):
    sf = 0 if "sf-zero" in quirks else None
    w_sf = 0 if sf == 0 else -1          # W = 3000.0 -> raw 30000 with -1
    w_raw = 3000 if sf == 0 else 30000
    v_sf = 0 if sf == 0 else -1
    blocks = [
        model_block(1, {"Mn": "EMS Interop", "Md": "pymodbus-sunspec", "SN": "PY-0001", "Vr": "3.16", "DA": 1},
                    length=50 if "short-common" in quirks else None),
        model_block(103, {"A": 13, "A_SF": 0, "PhVphA": 2301 if v_sf == -1 else 230, "V_SF": v_sf,
                          "W": w_raw, "W_SF": w_sf, "Hz": 5001, "Hz_SF": -2,
                          "DCV": 5280 if v_sf == -1 else 528, "DCV_SF": v_sf,
                          "TmpCab": 412, "Tmp_SF": -1, "St": 4}),
    ]
    if "no-nameplate" not in quirks:
        blocks.append(model_block(120, {"DERTyp": 82, "WRtg": 5000, "WRtg_SF": 0}))
    blocks.append(model_block(123, {"WMaxLimPct": 100, "WMaxLimPct_SF": 0, "WMaxLimPct_RvrtTms": 0,
                                    "WMaxLim_Ena": 0}))
    if "battery" in quirks:
        blocks.append(model_block(802, {
            "AHRtg": 100, "AHRtg_SF": 0, "WHRtg": 5120, "WHRtg_SF": 0, "WChaRteMax": 5000,
            "WDisChaRteMax": 5000, "WChaDisChaMax_SF": 0,
            "SoC": 250 if "soc-250" in quirks else 50, "SoC_SF": 0,
            "V": 528, "V_SF": -1, "CellVMin": -3000 if "cell-minus-3v" in quirks else 3290,
            "CellVMax": 3310, "CellV_SF": -3, "A": 0, "A_SF": 0, "AChaMax": 100, "ADisChaMax": 100,
            "AMax_SF": 0, "State": 3, "ReqInvState": 0, "Evt1": 0, "Evt2": 0, "EvtVnd1": 0, "EvtVnd2": 0,
            "LocRemCtl": 0, "Typ": 4, "SetOp": 1, "SetInvState": 1,
        }))
    image = [0x5375, 0x6E53]
    for b in blocks:
        image += b
    image += [0xFFFF, 0]
    return image


warnings.filterwarnings("ignore")


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--quirk", action="append", default=[])
    args = ap.parse_args()
    base = 0 if "base0" in args.quirk else 40000
    image = build(set(args.quirk))
    block = ModbusSparseDataBlock({base + i: v for i, v in enumerate(image)})
    context = ModbusServerContext(devices=ModbusDeviceContext(hr=block), single=True)
    server = asyncio.ensure_future(StartAsyncTcpServer(context=context, address=("127.0.0.1", args.port)))
    await asyncio.sleep(0.3)
    print(f"READY {args.port}", flush=True)
    await server


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
