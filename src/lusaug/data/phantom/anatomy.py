"""Phantom physics and patients: the fixed anatomy/scanner ranges and per-patient sampling.

:class:`Physics` holds the ranges of the simulated anatomy and scanner; :func:`sample_patient`
draws one :class:`Patient` (geometry, chest wall, ribs, pleura, scanner, motion) and adds the
class signs of its label, scaled by ``phantom.difficulty`` (:func:`sign_strength`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROBES = ("convex", "linear")
# Raw sizes below this cannot hold the anatomy (pleura, A-lines, B-lines) at a visible scale.
MIN_SIDE = 32


@dataclass(frozen=True)
class Physics:
    """Fixed ranges of the simulated anatomy and scanner, in normalised units.

    Depth ``z`` and lateral position ``u`` run over [0, 1] of the beam-space image; amplitudes are
    linear echo amplitudes before log compression (pleura ~ 1 = 0 dB). These describe the physics
    of the stand-in, not experiment knobs, so they live here rather than in params.yaml; the
    experiment knobs (counts, sizes, difficulty) are ``params.phantom``.
    """

    ref_side: int = 160  # speckle sizes below are in px at this side; scaled to the raw size
    # strength of class signs = (1 - difficulty) ** exponent: 1 at 0, ~0.63 at the default 0.6,
    # min_strength at 1 (signs as faint as the patient-to-patient nuisance)
    strength_exponent: float = 0.5
    min_strength: float = 0.05
    severity: tuple[float, float] = (0.55, 1.0)  # per-patient disease severity
    # geometry
    convex_apex: tuple[float, float] = (0.25, 0.6)  # apex height above the image, x image height
    convex_depth: tuple[float, float] = (0.9, 0.99)  # imaged depth, x image height
    convex_half_angle_deg: tuple[float, float] = (28.0, 38.0)
    convex_corner_margin_deg: float = 4.0  # keep the top corners outside the fan
    lateral_offset: float = 0.03  # fan/rectangle centre jitter, x width
    linear_margin: tuple[float, float] = (0.0, 0.07)  # black side margins, x width
    linear_top: tuple[float, float] = (0.0, 0.05)  # black rows on top, x height
    # anatomy (depths as a fraction of the imaged depth)
    pleura_depth: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"convex": (0.15, 0.27), "linear": (0.26, 0.4)}
    )
    pleura_curve: float = 0.06  # max bow of the pleura across the field
    pleura_thickness_px: tuple[float, float] = (1.0, 1.6)
    pleura_amp: tuple[float, float] = (0.85, 1.25)
    skin_depth: float = 0.018
    skin_amp: float = 0.16
    wall_base: tuple[float, float] = (0.022, 0.045)
    fat_fraction: tuple[float, float] = (0.15, 0.45)  # hypoechoic fat, x pleural depth
    wall_bands: tuple[int, int] = (3, 7)
    wall_band_amp: tuple[float, float] = (0.02, 0.1)
    wall_texture: float = 0.35  # log-amplitude of the wall's slow lateral heterogeneity
    ribs: tuple[int, int] = (0, 2)
    rib_half_width: tuple[float, float] = (0.05, 0.1)
    rib_above_pleura: tuple[float, float] = (0.015, 0.05)
    rib_amp: tuple[float, float] = (0.45, 0.9)
    shadow: float = 0.03  # echo left below a rib
    haze: tuple[float, float] = (0.005, 0.011)  # reverberation haze below a normal pleura
    aline_amp: tuple[float, float] = (0.05, 0.13)  # first A-line, x pleura amplitude
    aline_decay: tuple[float, float] = (0.45, 0.65)  # each further A-line
    # scanner
    speckle_px: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {"convex": (0.75, 1.7), "linear": (0.55, 1.1)}
    )  # axial, lateral PSF sigma in px at ref_side
    speckle_keep: float = 0.9  # share of a frame's lung speckle carried over from the last frame
    fresh_ar: float = 0.75  # AR(1) coefficient of the renewed part of the lung speckle
    attenuation: tuple[float, float] = (1.0, 2.3)  # amplitude exp(-a z)
    tgc_match: tuple[float, float] = (0.7, 1.05)  # how much of the attenuation the TGC undoes
    tgc_jitter_db: float = 2.0
    gain_db: tuple[float, float] = (-3.0, 2.5)
    dynamic_range_db: tuple[float, float] = (44.0, 52.0)
    noise: tuple[float, float] = (0.0002, 0.0008)  # receiver noise amplitude
    # motion
    slide_amp: tuple[float, float] = (0.01, 0.035)  # lateral lung sliding, x width
    breath_period_s: tuple[float, float] = (2.5, 4.5)
    breath_axial_px: tuple[float, float] = (0.3, 1.2)  # whole-image axial motion, px at ref_side
    clip_shift: float = 0.08  # probe moved between clips, x width
    # class signs (amplitudes are scaled by strength x severity)
    bline_amp: tuple[float, float] = (0.1, 0.25)
    bline_decay: float = 0.5  # B-line fade over the depth below the pleura
    irregularity_px: tuple[float, float] = (1.5, 3.5)  # pleural depth jitter, px at ref_side


PHYS = Physics()


@dataclass
class Patient:
    """The anatomy and scanner settings of one simulated patient (shared by all their clips)."""

    patient_id: str
    label: str
    probe: str
    strength: float  # class-sign strength (difficulty and severity folded in)
    geometry: dict[str, float]
    pleura: dict[str, float]
    wall: dict[str, Any]
    ribs: list[tuple[float, float, float, float]]  # (u, half width, depth above pleura, amplitude)
    scanner: dict[str, float]
    motion: dict[str, float]
    alines: dict[str, float]
    blines: list[tuple[float, float, float]]  # (u, width, amplitude)
    consolidations: list[dict[str, float]] = field(default_factory=list)
    lobar: dict[str, float] | None = None  # pneumonia: the large consolidation
    signs: list[str] = field(default_factory=list)  # human-readable findings (for debugging)


def _u(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def sign_strength(difficulty: float) -> float:
    """Global class-sign strength for a difficulty in [0, 1]."""
    base = max(0.0, 1.0 - difficulty) ** PHYS.strength_exponent
    return float(np.clip(base, PHYS.min_strength, 1.0))


def sample_patient(
    label: str,
    probe: str,
    rng: np.random.Generator,
    difficulty: float,
    patient_id: str = "p",
) -> Patient:
    """Draw one patient's anatomy, scanner settings and findings for ``label``.

    Args:
        label: one of regular, covid, pneumonia, viral.
        probe: convex or linear.
        rng: the patient's own generator.
        difficulty: params.phantom.difficulty.
        patient_id: stored on the result.
    """
    if probe not in PROBES:
        raise ValueError(f"probe must be one of {PROBES}, got {probe!r}")
    if label not in ("regular", "covid", "pneumonia", "viral"):
        raise ValueError(f"the phantom simulates regular/covid/pneumonia/viral, not {label!r}")
    p = PHYS
    severity = _u(rng, p.severity)
    k = sign_strength(difficulty) * severity  # how textbook this patient's findings are
    mimic = difficulty * (1.0 - severity * 0.5)  # chance-like weight of look-alike findings

    if probe == "convex":
        apex = _u(rng, p.convex_apex)
        geometry = {
            "apex": apex,
            "depth": _u(rng, p.convex_depth),
            "half_angle": math.radians(_u(rng, p.convex_half_angle_deg)),
            "x_off": float(rng.uniform(-p.lateral_offset, p.lateral_offset)),
        }
    else:
        geometry = {
            "left": _u(rng, p.linear_margin),
            "right": _u(rng, p.linear_margin),
            "top": _u(rng, p.linear_top),
            "x_off": float(rng.uniform(-p.lateral_offset, p.lateral_offset)),
        }

    zp = _u(rng, p.pleura_depth[probe])
    pleura = {
        "z": zp,
        "curve": float(rng.uniform(-p.pleura_curve, p.pleura_curve)) * zp,
        "thick_px": _u(rng, p.pleura_thickness_px),
        "amp": _u(rng, p.pleura_amp),
        "irregular_px": 0.0,
        "irregular_corr": float(rng.uniform(0.02, 0.06)),
        "fragment": 0.0,
    }
    n_bands = int(rng.integers(p.wall_bands[0], p.wall_bands[1] + 1))
    fat = _u(rng, p.fat_fraction)
    wall = {
        "base": _u(rng, p.wall_base),
        "fat": fat * zp,
        "bands": [
            (
                float(rng.uniform(fat * zp, 0.93 * zp)),  # depth
                _u(rng, p.wall_band_amp),
                float(rng.uniform(0.003, 0.01)),  # thickness
                float(rng.uniform(0.0, 0.012)),  # wave amplitude
                float(rng.uniform(0.5, 2.5)),  # wave frequency over the field
                float(rng.uniform(0, 2 * math.pi)),
            )
            for _ in range(n_bands)
        ],
    }
    n_ribs = int(rng.integers(p.ribs[0], p.ribs[1] + 1))
    ribs = []
    for i in range(n_ribs):
        side = (-1) ** i if n_ribs > 1 else float(rng.choice([-1.0, 1.0]))
        ribs.append(
            (
                0.5 + side * float(rng.uniform(0.28, 0.5)),
                _u(rng, p.rib_half_width),
                _u(rng, p.rib_above_pleura),
                _u(rng, p.rib_amp),
            )
        )
    att = _u(rng, p.attenuation)
    scanner = {
        "speckle_axial": float(rng.uniform(*p.speckle_px[probe])) * 0.6,
        "speckle_lateral": float(rng.uniform(*p.speckle_px[probe])),
        "att": att,
        "tgc": att * _u(rng, p.tgc_match),
        "tgc_knots": rng.normal(0.0, p.tgc_jitter_db, 4).tolist(),
        "gain_db": _u(rng, p.gain_db),
        "dr_db": _u(rng, p.dynamic_range_db),
        "noise": _u(rng, p.noise),
        "haze": _u(rng, p.haze),
    }
    motion = {
        "slide": _u(rng, p.slide_amp),
        "period": _u(rng, p.breath_period_s),
        "axial_px": _u(rng, p.breath_axial_px),
    }
    alines = {"amp": _u(rng, p.aline_amp), "decay": _u(rng, p.aline_decay), "keep": 1.0}
    pat = Patient(
        patient_id=patient_id,
        label=label,
        probe=probe,
        strength=k,
        geometry=geometry,
        pleura=pleura,
        wall=wall,
        ribs=ribs,
        scanner=scanner,
        motion=motion,
        alines=alines,
        blines=[],
    )
    _add_findings(pat, rng, k, mimic)
    return pat


def _bline(rng: np.random.Generator, u: float, width: tuple[float, float], amp: float):
    return (float(u), _u(rng, width), float(amp * rng.uniform(0.55, 1.2)))


def _interstitial(pat: Patient, rng: np.random.Generator, k: float, diffuse: float) -> None:
    """Covid and viral share one model of interstitial disease; they differ in its parameters.

    ``diffuse`` in [0, 1] moves from patchy (B-lines clustered in one to three areas, some
    confluent, skip areas with A-lines, thick fragmented pleura) to diffuse (many thin B-lines
    spread over the whole field, thinner pleura). Covid draws it low, viral high, so the two
    overlap the way the real findings do.
    """
    p = PHYS
    bamp = _u(rng, p.bline_amp)
    patchy = 1.0 - diffuse
    pat.pleura["irregular_px"] = _u(rng, p.irregularity_px) * k * (0.7 + 0.3 * patchy)
    pat.pleura["thick_px"] *= 1.0 + k * (0.4 + 1.2 * patchy)
    pat.pleura["fragment"] = k * (0.25 + 0.5 * patchy)
    pat.alines["keep"] = 1.0 - 0.85 * k
    pat.motion["slide"] *= 1.0 - 0.5 * k
    n = int(rng.integers(6, 13))
    n_diffuse = round(n * diffuse)
    spread = (np.arange(n_diffuse) + rng.uniform(0.2, 0.8)) / max(n_diffuse, 1)
    for u in spread + rng.normal(0.0, 0.3 / max(n_diffuse, 1), n_diffuse):
        pat.blines.append(_bline(rng, u, (0.007, 0.016), bamp * 0.85 * k))
    centres = rng.uniform(0.15, 0.85, int(rng.integers(1, 4)))
    for i in range(n - n_diffuse):
        pat.blines.append(
            _bline(rng, centres[i % len(centres)] + rng.normal(0.0, 0.06), (0.012, 0.03), bamp * k)
        )
    for c in centres:
        if rng.random() < 0.75 * patchy:  # confluent "white" band
            pat.blines.append(_bline(rng, c, (0.06, 0.14), bamp * 0.8 * k))
    n_cons = int(rng.poisson(2.2 * patchy + 0.15))
    for _ in range(min(n_cons, 4)):
        pat.consolidations.append(
            {
                "u": float(rng.uniform(0.12, 0.88)),
                "half_w": float(rng.uniform(0.02, 0.05)) * (0.5 + k),
                "depth": float(rng.uniform(0.025, 0.07)) * (0.5 + k),
                "echo": float(rng.uniform(0.04, 0.07)),
            }
        )


def _diffuseness(rng: np.random.Generator, k: float, covid: bool) -> float:
    """Covid: mostly patchy, viral: mostly diffuse; both pulled towards 0.5 as signs fade."""
    draw = float(rng.beta(1.5, 4.5) if covid else rng.beta(4.5, 1.5))
    return 0.5 + (draw - 0.5) * min(1.0, 0.4 + 0.8 * k)


def _add_findings(pat: Patient, rng: np.random.Generator, k: float, mimic: float) -> None:
    """Class signs scaled by the patient's strength ``k``; look-alikes weighted by ``mimic``."""
    p = PHYS
    label = pat.label
    if label == "regular":
        pat.signs.append("A-lines, sliding")
        # a healthy lung may show an isolated B-line or a slightly rough pleura
        if rng.random() < 0.15 + 0.35 * mimic:
            amp = _u(rng, p.bline_amp) * 0.55
            pat.blines.append(_bline(rng, rng.uniform(0.15, 0.85), (0.008, 0.02), amp))
            pat.signs.append("isolated B-line")
        if rng.random() < mimic:
            pat.pleura["irregular_px"] = _u(rng, p.irregularity_px) * 0.35
    elif label == "covid":
        _interstitial(pat, rng, k, _diffuseness(rng, k, covid=True))
        pat.signs.append("patchy B-lines, thick irregular pleura, subpleural consolidations")
    elif label == "viral":
        _interstitial(pat, rng, k, _diffuseness(rng, k, covid=False))
        pat.signs.append("diffuse thin B-lines, thin irregular pleura")
    elif label == "pneumonia":
        width = rng.uniform(0.35, 0.8) * (0.6 + 0.4 * k)
        centre = rng.uniform(0.1 + width / 2, 0.9 - width / 2) if width < 0.8 else 0.5
        pat.lobar = {
            "u1": float(centre - width / 2),
            "u2": float(centre + width / 2),
            "depth": float(rng.uniform(0.25, 0.55) * (0.6 + 0.4 * k)),
            "echo": float(rng.uniform(0.04, 0.07)) * (0.45 + 0.55 * k),
            "shred": float(rng.uniform(0.3, 0.8)),
            "bronchi": int(rng.integers(2, 6)),
            "bronchi_amp": float(rng.uniform(0.35, 0.8) * (0.35 + 0.65 * k)),
            "effusion": float(rng.uniform(0.02, 0.06)) if rng.random() < 0.3 else 0.0,
        }
        pat.pleura["irregular_px"] = _u(rng, p.irregularity_px) * 0.4 * k
        pat.alines["keep"] = 1.0 - 0.7 * k
        pat.motion["slide"] *= 1.0 - 0.6 * k
        bamp = _u(rng, p.bline_amp)
        for _ in range(int(rng.integers(1, 3))):
            side = pat.lobar["u1"] - 0.05 if rng.random() < 0.5 else pat.lobar["u2"] + 0.05
            pat.blines.append(_bline(rng, side + rng.normal(0, 0.03), (0.01, 0.025), bamp * k))
        pat.signs.append("consolidation with air bronchograms, focal B-lines")
