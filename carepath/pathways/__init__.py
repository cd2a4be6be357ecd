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
    """Register every shipped pathway (again is harmless), the first as the default."""
    for index, pathway in enumerate(SHIPPED):
        try:
            known = pathway_for(pathway.id)
        except LookupError:
            known = None
        if known is not pathway:
            register(pathway, default=index == 0)


register_shipped()  # importing the boot list registers it: every entry point imports this module
