"""RAPL through the pyRAPL package, the alternative reader some users ask for.

How it differs from `rapl`: pyRAPL is Intel-only (it checks the CPU vendor), reads the fixed path
`/sys/class/powercap/intel-rapl/intel-rapl:N` (no configurable root), knows no counter range so a wrap inside a
window cannot be recovered, and is unmaintained since 2019. Counters are read through its `Sensor.energy()`,
which returns package and DRAM microjoules per socket.
"""

from __future__ import annotations

import contextlib
import io

from sustainable_ipa.energy.measurement import EnergySource
from sustainable_ipa.energy.meter import CounterReader, MeterUnavailable


class PyRaplReader(CounterReader):
    source = EnergySource.PYRAPL

    def __init__(self):
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                import pyRAPL  # prints a pymongo warning on import

                pyRAPL.setup()
                self._sensor = pyRAPL.sensor.Sensor()
        except Exception as err:
            raise MeterUnavailable(f"pyRAPL cannot read energy here ({type(err).__name__})",
                                   "pyRAPL needs an Intel CPU with readable RAPL: pass energy.meter=rapl or estimate") from None
        self.read_j()

    def read_j(self) -> dict[str, float]:
        # Sensor.energy() flattens (package, dram) per socket; -1 marks a domain the machine lacks.
        values = self._sensor.energy()
        out = {}
        for i in range(0, len(values), 2):
            socket = i // 2
            if values[i] >= 0:
                out[f"cpu/socket{socket}"] = values[i] / 1e6
            if i + 1 < len(values) and values[i + 1] >= 0:
                out[f"dram/socket{socket}"] = values[i + 1] / 1e6
        return out
