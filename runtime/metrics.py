"""Metric naming every program shares: one prefix, so a dashboard finds the worker's and the
gateway's series alike (each program keeps its own registry and metrics)."""

from __future__ import annotations

PREFIX = "therapy_compliance"
