"""A Lava process whose model raises at step 3 (for tests/test_lava_bridge.py). It lives alone in
this folder because Lava's compiler imports every module beside a process's own to find models."""
import numpy as np
from lava.magma.core.decorator import implements, requires
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import OutPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class Faulty(AbstractProcess):
    def __init__(self, shape=(3,)):
        super().__init__()
        self.s_out = OutPort(shape=shape)


@implements(proc=Faulty, protocol=LoihiProtocol)
@requires(CPU)
class PyFaulty(PyLoihiProcessModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)

    def run_spk(self):
        if self.time_step == 3:
            raise ValueError(f"faulty model: failing at step {self.time_step} on purpose")
        self.s_out.send(np.ones(self.s_out.shape, dtype=np.int32))
