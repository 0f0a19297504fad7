"""Benchmarks in containers: reaching an engine (Docker Engine, or podman's compatible API), images (the host image,
image identity), running a command with a timeout and guaranteed cleanup, and reading third-party images' logs."""

from .engine import EngineUnavailable, PodmanService, connect, podman_available
from .images import HOST_IMAGE, ImageIdentity, host_image, host_mounts, image_identity
from .logs import PARSERS, LogFormatError, Throughput, parse_file, parse_throughput
from .runner import (
    ContainerFailed,
    ContainerRun,
    ContainerSpec,
    ContainerStartFailed,
    ContainerTimeout,
    Mount,
    Runner,
    remove_labelled,
)

__all__ = [
    "HOST_IMAGE",
    "PARSERS",
    "ContainerFailed",
    "ContainerRun",
    "ContainerSpec",
    "ContainerStartFailed",
    "ContainerTimeout",
    "EngineUnavailable",
    "ImageIdentity",
    "LogFormatError",
    "Mount",
    "PodmanService",
    "Runner",
    "Throughput",
    "connect",
    "host_image",
    "host_mounts",
    "image_identity",
    "parse_file",
    "parse_throughput",
    "podman_available",
    "remove_labelled",
]
