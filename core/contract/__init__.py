"""Message contract v1: topics and payload models (docs/protocol.md, JSON Schemas in schemas/)."""

from semon.contract.messages import (
    DeviceEvent,
    DoorState,
    ElevatorStatus,
    Kind,
    ServiceMode,
    TravelDir,
    VesselStatus,
)
from semon.contract.topics import TopicError, TopicInfo, alarm_topic, device_topic, parse_topic

__all__ = [
    "DeviceEvent",
    "DoorState",
    "ElevatorStatus",
    "Kind",
    "ServiceMode",
    "TopicError",
    "TopicInfo",
    "TravelDir",
    "VesselStatus",
    "alarm_topic",
    "device_topic",
    "parse_topic",
]
