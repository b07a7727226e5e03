"""The corrected DisWOT score (``correction: null_expectation``): chance level removed, dead
channels not counted.

Two biases of the semantic (ICKD) term make narrow and degenerate students score well whatever
the teacher (see docs/diswot.md):

**A width-dependent chance level.** At initialisation nothing ties student channel i to teacher
channel i, so M_s mostly measures how far apart two Grams are when their channels correspond
at random. For isotropic gradient directions that expectation is ``2 - 4/(π C)`` (C the
compared width): lower for narrow maps, so a narrow student is "closer" by construction. The
correction subtracts, class by class, the exact expectation of the distance over a uniformly
random correspondence of the teacher's channels to the student's (a random permutation π of
the teacher's rows and columns; row normalisation commutes with it)::

    E_π ||A - P_π B P_πᵀ||_F² = ||A||² + ||B||² - 2 [d_B · tr(A) + o_B · (ΣA - tr(A))]

with ``d_B`` the mean diagonal entry of B and ``o_B`` its mean off-diagonal entry. This is
computed, not estimated: no sampling, no extra networks. It uses each map's own statistics (a
gradient map of post-ReLU features is not isotropic), so the corrected term is centred on 0 for
maps that are unrelated to the teacher at every width (tested over seeds and widths in
``tests/components/test_diswot_correction.py``). Since the weights of a network at
initialisation are exchangeable across the channels of its last layer, the raw M_s of two
independently initialised networks has exactly this expectation; what is left is how much
better (negative) or worse (positive) than chance the realised channels line up.

**Dead channels.** A channel whose response is the same for every row of the batch carries
nothing about the rows; a dead (all-zero) one even lowers M_s: its gradient entry is zero, so
its Gram row is zero and costs 1 against the teacher's unit row instead of about 2 (and a
constant channel adds the same offset to every entry of the sample Gram, pulling its rows
together). The correction drops such channels
(standard deviation over the batch at most ``DEAD_TOLERANCE`` times the largest channel's)
from the penultimate features before the gradient map is formed, and from the last feature map
before the relation Gram: a student with a dead channel scores exactly as the same student
without it. A network with no live channel at all gets ``NO_LIVE_CHANNEL`` as its semantic
distance, worse than any other.
"""

from __future__ import annotations

import torch

#: A channel is dead when its std over the batch is at most this fraction of the largest one's.
DEAD_TOLERANCE = 1e-6
#: Corrected semantic distance of a network without a live channel (the range is about [-2, 2]).
NO_LIVE_CHANNEL = 4.0


def live_channels(values: torch.Tensor) -> torch.Tensor:
    """Mask (C,) of the channels of ``values`` (N, C, ...) that vary over the N rows.

    A channel is live when, somewhere in it, its standard deviation over the rows exceeds
    ``DEAD_TOLERANCE`` times the largest such deviation of any channel.
    """
    flat = values.double().flatten(2) if values.dim() > 2 else values.double().unsqueeze(-1)
    spread = flat.std(dim=0, unbiased=False).amax(dim=1)  # (C,)
    top = float(spread.max()) if spread.numel() else 0.0
    if top == 0.0:
        return torch.zeros(spread.shape, dtype=torch.bool)
    return spread > DEAD_TOLERANCE * top


def null_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per class, ``E_π ||Ĝ^S_k - P_π Ĝ^T_k P_πᵀ||_F²`` of row-normalised Grams (K, C, C)."""
    c = student.shape[1]
    trace_s = student.diagonal(dim1=1, dim2=2).sum(dim=1)
    trace_t = teacher.diagonal(dim1=1, dim2=2).sum(dim=1)
    total_s, total_t = student.sum(dim=(1, 2)), teacher.sum(dim=(1, 2))
    mean_diagonal_t = trace_t / c
    mean_off_t = (total_t - trace_t) / (c * (c - 1)) if c > 1 else torch.zeros_like(total_t)
    cross = mean_diagonal_t * trace_s + mean_off_t * (total_s - trace_s)
    return (student**2).sum(dim=(1, 2)) + (teacher**2).sum(dim=(1, 2)) - 2 * cross


def corrected_semantic(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """``1/(K·C) Σ_k (||Ĝ^S_k - Ĝ^T_k||² - E_π ||Ĝ^S_k - P_π Ĝ^T_k P_πᵀ||²)`` of two Gram
    stacks (K, C, C) of one width: below 0 when the channels line up better than chance."""
    k, c = student.shape[:2]
    raw = ((student - teacher) ** 2).sum(dim=(1, 2))
    return float((raw - null_distance(student, teacher)).sum() / (k * c))
