"""Device and precision for a run, resolved and checked before any data or model loads.

`auto` picks the best device present (cuda, then tpu, then cpu) and its best precision;
asking for a device or precision that is not there is a PipelineError naming what was found.
The trainer hands the result to accelerate, which also runs `accelerate launch` multi-GPU jobs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from omegaconf import DictConfig

from pipeline.errors import PipelineError


@dataclass(frozen=True)
class Hardware:
    device: str  # cpu, cuda or tpu
    precision: str  # fp32, fp16 or bf16
    device_count: int

    def trainer_flags(self) -> dict[str, bool]:
        """The SentenceTransformerTrainingArguments fields that select device and precision."""
        return {"use_cpu": self.device == "cpu", "bf16": self.precision == "bf16",
                "fp16": self.precision == "fp16"}

    @property
    def model_device(self) -> str | None:
        """Where to load the model; None on TPU, where accelerate moves it to the XLA device."""
        return None if self.device == "tpu" else self.device

    def tags(self) -> dict[str, str]:
        import accelerate

        return {"hardware/device": self.device, "hardware/precision": self.precision,
                "hardware/device_count": str(self.device_count),
                "version/accelerate": accelerate.__version__}


def _has_xla() -> bool:
    return importlib.util.find_spec("torch_xla") is not None


def found() -> str:
    """What this machine offers, for error messages."""
    import os

    import torch

    parts = [f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})",
             f"{torch.cuda.device_count()} CUDA device(s)",
             "torch_xla installed" if _has_xla() else "torch_xla not installed",
             f"{os.cpu_count()} CPU cores"]
    return ", ".join(parts)


def _cpu_has_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _best_precision(device: str) -> str:
    import torch

    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device == "tpu" else "fp32"


def _check_precision(device: str, precision: str) -> None:
    import torch

    if precision == "fp16" and device != "cuda":
        raise PipelineError(f"hardware.precision='fp16' is not allowed on {device}: fp16 mixed "
                            "precision needs a CUDA GPU. Use hardware.precision=fp32 "
                            f"{'or bf16 ' if device == 'tpu' else ''}here.")
    if precision != "bf16":
        return
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        raise PipelineError(f"hardware.precision='bf16' is not allowed: {torch.cuda.get_device_name()} "
                            "has no bf16 support (it needs an Ampere or newer GPU). Use "
                            "hardware.precision=fp16 or hardware.precision=auto.")
    if device == "cpu" and not _cpu_has_bf16():
        raise PipelineError("hardware.precision='bf16' is not allowed on this CPU: it has no native "
                            "bf16 (no AVX512-BF16 or AMX), so bf16 would be emulated and slower than "
                            "fp32. Use hardware.precision=fp32.")


def resolve(cfg: DictConfig) -> Hardware:
    """The device, precision and device count hardware config `cfg` gets on this machine."""
    if (cfg.device, cfg.precision) == ("cpu", "fp32"):  # needs no probe (and no torch import)
        return Hardware("cpu", "fp32", 1)
    import torch

    device = cfg.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "tpu" if _has_xla() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"hardware=cuda, but this machine has no usable CUDA device: found "
                            f"{found()}. Use hardware=cpu, or hardware=auto to take a GPU only "
                            "where there is one.")
    if device == "tpu" and not _has_xla():
        raise PipelineError(f"hardware=tpu needs torch_xla (which accelerate uses for TPUs), and it "
                            f"is not installed: found {found()}. Install the torch_xla build matching "
                            "torch on the TPU host, or use hardware=cpu / hardware=auto.")
    precision = _best_precision(device) if cfg.precision == "auto" else cfg.precision
    _check_precision(device, precision)
    return Hardware(device, precision, _device_count(device))


def _device_count(device: str) -> int:
    import torch

    if device == "cuda":
        return torch.cuda.device_count()
    if device == "tpu":
        import torch_xla.runtime

        return torch_xla.runtime.global_runtime_device_count()
    return 1
