"""`import pveoci`: its public names are what the Python API documents, whatever was imported before."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_pveoci_connect_stays_the_function_once_its_module_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    # A script that first imports from pveoci.connect (as the in-memory backend's example does), or that ran the
    # command line in-process, then calls pveoci.connect(): the import system set pveoci.connect to the module.
    import pveoci

    monkeypatch.delattr(pveoci, "connect", raising=False)  # (looking it up may import the module: first)
    monkeypatch.delitem(sys.modules, "pveoci.connect", raising=False)
    module = importlib.import_module("pveoci.connect")
    assert pveoci.connect is module.connect
