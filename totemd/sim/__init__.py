"""The deterministic Totem cluster simulator (see cluster.py, faults.py, runner.py)."""

from totemd.sim.cluster import Cluster, SimConfig
from totemd.sim.faults import Fault, FaultSchedule, random_schedule
from totemd.sim.runner import SeedResult, run_seed

__all__ = ["Cluster", "SimConfig", "Fault", "FaultSchedule", "random_schedule", "SeedResult",
           "run_seed"]
