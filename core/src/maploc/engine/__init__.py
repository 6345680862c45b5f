"""The generic engine: one train / validate / evaluate loop for every method (on Lightning Fabric)."""

from maploc.engine.checkpoint import load_checkpoint, save_checkpoint
from maploc.engine.engine import PRECISIONS, Engine, EngineConfig, FitResult, TrainingError, TrainingInterrupted

__all__ = ["Engine", "EngineConfig", "FitResult", "TrainingError", "TrainingInterrupted", "PRECISIONS", "load_checkpoint", "save_checkpoint"]
