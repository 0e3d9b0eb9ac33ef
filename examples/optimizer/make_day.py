#!/usr/bin/env python3
"""Build examples/optimizer/day.csv (the optimizer CSV of design.md §7) from the repository's
real data, for 1 May 2018 (a public holiday in Germany with 18 hours of negative day-ahead prices):

- import_price / export_price: SMARD day-ahead prices, bidding zone Germany/Austria/Luxembourg
  (strategies/data/smard_day_ahead_2018.csv; Bundesnetzagentur | SMARD.de, CC BY 4.0), as a
  dynamic tariff: import = (spot/1000 + 0.20 EUR/kWh grid fees and levies) x 1.19 VAT; export =
  0.08 EUR/kWh fixed feed-in. Hourly prices hold for their four quarter-hours.
- load_w: BDEW H25 standard household profile, May, holiday (FT) column
  (devices/data/bdew_h25.csv; demandlib, MIT), scaled to 4000 kWh/a, times the BDEW
  dynamisation factor of day 121.
- pv_w: 5 kWp x 0.85 system efficiency x GHI/1000 from the TMY3 file of Greensboro NC, 1 May
  (devices/data/723170TYA.CSV; NREL via pvlib, BSD-3), hourly values linearly interpolated to
  quarter-hours, taken by local clock hour (the PV shape is Greensboro's, placed on a German
  day: an example, not a forecast).

Timestamps are the UTC starts of the 96 quarter-hours of the local (CEST, UTC+2) day.
Run from the repository root: python3 examples/optimizer/make_day.py > examples/optimizer/day.csv
"""
import csv, datetime

rows = list(csv.reader(open('strategies/data/smard_day_ahead_2018.csv', encoding='utf-8-sig'), delimiter=';'))
col = [k for k, c in enumerate(rows[0]) if c.startswith('Germany/Austria/Luxembourg')][0]
spot = [float(r[col].replace(',', '')) for r in rows[1:] if r[0] == 'May 1, 2018']
assert len(spot) == 24

bdew = list(csv.reader(open('devices/data/bdew_h25.csv', encoding='utf-8')))
# Header row 2: day types; May holiday = the 'FT' column of the fifth month.
mcol = 1 + 4 * 3 + 1
assert bdew[0][mcol] == 'Mai' and bdew[1][mcol] == 'FT'
t = 121
dyn = -3.92e-10 * t**4 + 3.2e-7 * t**3 - 7.02e-5 * t**2 + 2.1e-3 * t + 1.24
load = [float(r[mcol]) * 4000 / 1e6 * 4 * 1000 * dyn for r in bdew[2:98]]

tmy = list(csv.reader(open('devices/data/723170TYA.CSV', encoding='utf-8')))
head = tmy[1]
ghi_col = head.index('GHI (W/m^2)')
ghi_end = [float(r[ghi_col]) for r in tmy[2:] if r[0].startswith('05/01/')]  # 01:00 .. 24:00
assert len(ghi_end) == 24
ghi_hour = [0.0] + ghi_end  # value at 00:00 .. 24:00 (end-of-hour stamps)
def ghi_at(q):
    h = q / 4.0
    i = int(h)
    f = h - i
    return ghi_hour[i] * (1 - f) + ghi_hour[min(i + 1, 24)] * f

start = datetime.datetime(2018, 4, 30, 22, 0, tzinfo=datetime.timezone.utc)
print('timestamp,pv_w,load_w,import_price,export_price')
for q in range(96):
    ts = (start + datetime.timedelta(minutes=15 * q)).strftime('%Y-%m-%dT%H:%M:%SZ')
    pv = 5000 * 0.85 * (ghi_at(q) + ghi_at(q + 1)) / 2 / 1000
    imp = (spot[q // 4] / 1000 + 0.20) * 1.19
    print(f'{ts},{pv:.1f},{load[q]:.1f},{imp:.5f},0.08000')
