"""The alternating adversarial schedule, as a pure function of (epoch, step).

Epochs ``< disc_warmup_epochs``: discriminator-only, on the representations of the model as it is
(the unfair backbone + freshly initialised prompts). Afterwards every training batch belongs to a
repeating cycle of ``rec_steps + together_steps + disc_steps`` batches:

* ``REC``      the prompts take a step on ``L_rec − λ·L_disc`` (discriminator frozen);
* ``TOGETHER`` the prompts take that step, then the discriminator a step on the same batch
  (on detached representations);
* ``DISC``     the discriminator alone takes a step.

Defaults (``rec_steps=1, together_steps=0, disc_steps=1``; one warm-up epoch) alternate one
prompt step with one discriminator step, which kept the adversary strong enough on our data.
"""

from __future__ import annotations

import enum


class Phase(enum.IntEnum):
    WARMUP = 0
    REC = 1
    TOGETHER = 2
    DISC = 3

    @property
    def updates_prompt(self) -> bool:
        return self in (Phase.REC, Phase.TOGETHER)

    @property
    def updates_discriminator(self) -> bool:
        return self in (Phase.WARMUP, Phase.TOGETHER, Phase.DISC)


def phase_for(
    epoch: int, step: int, disc_warmup_epochs: int, rec_steps: int, together_steps: int, disc_steps: int
) -> Phase:
    """Phase of batch ``step`` (0-based within the epoch) of ``epoch`` (0-based)."""
    if epoch < disc_warmup_epochs:
        return Phase.WARMUP
    cycle = rec_steps + together_steps + disc_steps
    position = step % cycle
    if position < rec_steps:
        return Phase.REC
    if position < rec_steps + together_steps:
        return Phase.TOGETHER
    return Phase.DISC
