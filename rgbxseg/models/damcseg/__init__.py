"""DAMCSeg (seeds/000_*, SPEC 5): one module per component — ``lmmf`` (light multi-modal fusion),
``staged_encoder`` (shared stages, last stage per task), ``detection`` (BiFPN + anchor-free head),
``global_branch`` / ``local_branch`` / ``prior_branch`` with ``branch_selection`` (gates), ``dsaf``
(complexity-adaptive fusion) and ``model`` (the whole network and DSJL)."""

from rgbxseg.models.damcseg.model import DAMCSeg, DAMCSegOutput

__all__ = ["DAMCSeg", "DAMCSegOutput"]
