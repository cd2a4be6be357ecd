"""The shipped pathways, one package each (definitions, inputs, state, rules); see carepath.engine.

This is the boot list: the one place outside the pathways' own packages that names them. The
worker, the API and the command line call ``register_shipped()`` before anything runs; the first
listed is the default pathway of an enrollment that names none.
"""

from __future__ import annotations

from carepath.engine.pathway import Pathway
from carepath.engine.registry import pathway_for, register
from carepath.pathways.ovcf_lumbar import OVCF_LUMBAR

SHIPPED: tuple[Pathway, ...] = (OVCF_LUMBAR,)


def register_shipped() -> None:
    """Register every shipped pathway not registered yet, the first as the default.

    The first registration wins: a copy of this package imported again later (the workflow
    sandbox re-imports modules for a Replayer) must not replace the boot-time pathway with one
    built on the sandbox's restricted datetime and zoneinfo.
    """
    for index, pathway in enumerate(SHIPPED):
        try:
            pathway_for(pathway.id)
        except LookupError:
            register(pathway, default=index == 0)


register_shipped()  # importing the boot list registers it: every entry point imports this module
