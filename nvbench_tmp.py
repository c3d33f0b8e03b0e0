import json, os, time
from agent.telemetry import TelemetryThread, ProcfsSampler, NvmlSampler
def run(samplers, label):
    th = TelemetryThread(samplers, "b", 20.0)
    th.start(); time.sleep(8); th.stop()
    print(label, round(100 * th.thread_cpu_s / 8, 3), "% of a core", th.samples)
run([ProcfsSampler()], "procfs only")
run([ProcfsSampler(), NvmlSampler(energy_interval_s=1e9)], "procfs+nvml, no energy")
run([ProcfsSampler(), NvmlSampler(energy_interval_s=1.0)], "procfs+nvml, energy 1 Hz")
run([ProcfsSampler(), NvmlSampler(energy_interval_s=2.0)], "procfs+nvml, energy 0.5 Hz")
