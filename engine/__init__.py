"""The serving engine: per-stream pipelines (audio front end, recogniser stream, online
diariser) over models from the store, and one worker thread that batches the chunks of every
live stream into one `decode_streams` call.

Importing `engine` does not import torch: torch comes in when a model is loaded, so the
server starts (and says it has no model) without it.
"""

from engine.config import EngineConfig
from engine.engine import Engine, EngineError, ModelUnavailable
from engine.events import End, Final, Partial, SpeakerEvent
from engine.spec import StreamSpec

__all__ = [
    "End",
    "Engine",
    "EngineConfig",
    "EngineError",
    "Final",
    "ModelUnavailable",
    "Partial",
    "SpeakerEvent",
    "StreamSpec",
]
