"""The embedded lung-ultrasound phantom: a seeded simulator of POCUS-style clips.

Each frame is built in *beam space* (rows = depth from the skin, columns = scan lines), as a B-mode
scanner forms it, then scan-converted to a fan (convex probe, apex above the image) or a rectangle
(linear probe) with black outside the field of view:

1. echogenicity maps: chest wall layers and ribs with acoustic shadows (static), and a sliding lung
   layer (pleural line, haze, B-lines, consolidations) that shifts laterally with breathing;
2. Rayleigh speckle: complex Gaussian noise blurred by the point-spread function, multiplied in,
   partly renewed frame to frame;
3. depth attenuation, receiver noise, time-gain compensation, patient gain, log compression.

Per class: *regular* — thin smooth pleura, A-line reverberations at multiples of the pleural depth,
lung sliding; *covid* — thick, irregular, fragmented pleura, patchy discrete and confluent B-lines,
small subpleural consolidations, fewer A-lines, reduced sliding; *pneumonia* — a large tissue-like
consolidation with branching air bronchograms, a shredded deep border, focal B-lines, sometimes an
effusion; *viral* — many thin B-lines spread evenly over the field and a thin irregular pleura:
close to covid, but more diffuse, thinner and with (almost) no consolidation.

``phantom.difficulty`` scales the class signs against the nuisance variation (patient anatomy,
gain, time-gain curve, noise, probe, geometry) and makes look-alikes more frequent (an isolated
B-line in a healthy lung, spared A-line areas in a covid lung).

Everything is a pure function of the seed: ``numpy.random.Generator(PCG64)`` streams derived with
``SeedSequence.spawn`` (one per class, per patient, per clip, per still image), so changing one
class's patient count leaves the other classes' patients unchanged.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from lusaug.config import Params, PhantomParams
from lusaug.data.manifest import RAW_METADATA_COLUMNS, RAW_METADATA_NAME
from lusaug.utils import atomic_path

logger = logging.getLogger(__name__)

SOURCE = "phantom"
LICENSE = "CC0-1.0 (synthetic)"
PROBES = ("convex", "linear")
VIDEO_DIR = "pocus_videos"
IMAGE_DIR = "pocus_images"
VIDEO_FOURCC = "mp4v"
VIDEO_SUFFIX = ".mp4"
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


# ---------------------------------------------------------------------------------------------
# rendering


def _smooth_1d(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance smooth random curve of length ``n`` (Gaussian-filtered white noise)."""
    x = rng.standard_normal(n + 8 * int(sigma + 1)).astype(np.float32)
    x = cv2.GaussianBlur(x.reshape(1, -1), (0, 0), sigmaX=max(sigma, 0.5)).ravel()
    x = x[4 * int(sigma + 1) : 4 * int(sigma + 1) + n]
    return (x - x.mean()) / (x.std() + 1e-6)


def _complex_speckle(
    rng: np.random.Generator, shape: tuple[int, int], sig_z: float, sig_u: float
) -> np.ndarray:
    """Circular complex Gaussian field blurred by the PSF, unit mean power; |.| is Rayleigh."""
    f = rng.standard_normal((*shape, 2), dtype=np.float32)
    f = cv2.GaussianBlur(f, (0, 0), sigmaX=max(sig_u, 0.3), sigmaY=max(sig_z, 0.3))
    return f / np.sqrt(np.mean(f * f) * 2 + 1e-12)


def _mag(c: np.ndarray) -> np.ndarray:
    return np.sqrt(c[..., 0] ** 2 + c[..., 1] ** 2)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _scan_maps(pat: Patient, h: int, w: int, d: int, lines: int):
    """Cartesian -> beam-space lookup maps and the field-of-view mask."""
    g = pat.geometry
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    if pat.probe == "convex":
        apex = g["apex"] * h
        depth = g["depth"] * h
        x0 = (0.5 + g["x_off"]) * (w - 1)
        # keep both top corners outside the sector
        corner = math.atan2(min(x0, w - 1 - x0), apex)
        half = min(g["half_angle"], corner - math.radians(PHYS.convex_corner_margin_deg))
        r = np.hypot(x - x0, y + apex)
        th = np.arctan2(x - x0, y + apex)
        map_y = (r - apex) / depth * (d - 1)
        map_x = (th / half + 1.0) / 2.0 * (lines - 1)
        mask = (r >= apex) & (r <= apex + depth) & (np.abs(th) <= half)
    else:
        left = g["left"] * w + g["x_off"] * w
        right = (w - 1) - g["right"] * w + g["x_off"] * w
        left, right = max(left, 0.0), min(right, w - 1.0)
        top = g["top"] * h
        map_x = (x - left) / (right - left) * (lines - 1)
        map_y = (y - top) / (h - 1 - top) * (d - 1)
        mask = (x >= left) & (x <= right) & (y >= top)
    map_x = np.clip(map_x, 0, lines - 1).astype(np.float32)
    map_y = np.clip(map_y, 0, d - 1).astype(np.float32)
    return map_x, map_y, mask


def _bronchogram_canvas(
    rng: np.random.Generator,
    lob: dict[str, float],
    zp: float,
    shape: tuple[int, int],
    m: int,
    shift: float,
) -> np.ndarray:
    """Branching bright air bronchograms inside the consolidation, drawn as thin lines."""
    d, lp = shape
    lines = lp - 2 * m
    canvas = np.zeros((d, lp), np.float32)
    u1, u2, depth = lob["u1"], lob["u2"], lob["depth"]

    def px(u: float, z: float) -> tuple[int, int]:
        # lung coordinate u -> padded column (the probe sits `shift` to the right in this clip)
        return (round((u - shift) * (lines - 1) + m), round(z * (d - 1)))

    thickness = max(1, round(d / PHYS.ref_side))
    for _ in range(int(lob["bronchi"])):
        # a trunk rising from deep in the consolidation towards the pleura, with side branches
        u = rng.uniform(u1 + 0.2 * (u2 - u1), u2 - 0.2 * (u2 - u1))
        z = zp + depth * rng.uniform(0.65, 0.9)
        angle = rng.normal(0.0, 0.35)
        stack = [(u, z, angle, 0)]
        while stack:
            u, z, angle, level = stack.pop()
            length = depth * rng.uniform(0.25, 0.45) / (1 + level)
            u2_, z2_ = u + length * math.sin(angle) * 0.6, z - length * math.cos(angle)
            z2_ = max(z2_, zp + 0.015)
            amp = float(rng.uniform(0.6, 1.0))
            cv2.line(canvas, px(u, z), px(u2_, z2_), amp, thickness)
            if level < 2:
                for turn in (-1, 1):
                    if rng.random() < 0.6:
                        stack.append((u2_, z2_, angle + turn * rng.uniform(0.3, 0.8), level + 1))
        # bright dots (air trapped in small bronchi)
        for _ in range(int(rng.integers(3, 9))):
            uu = rng.uniform(u1, u2)
            zz = zp + depth * rng.uniform(0.1, 0.9)
            cv2.circle(canvas, px(uu, zz), thickness, float(rng.uniform(0.5, 1.0)), -1)
    return cv2.GaussianBlur(canvas, (0, 0), 0.6 * d / PHYS.ref_side + 0.3)


@dataclass
class _ClipLayers:
    wall: np.ndarray  # static echo above the pleura and the ribs (d, lines)
    wall_speckle: np.ndarray  # its speckle magnitude (static)
    shadow: np.ndarray  # multiplicative rib shadow on everything below the rib surface
    alines: np.ndarray  # static A-line echo (d, lines)
    lung: np.ndarray  # sliding diffuse echo: haze, consolidations (d, lines + 2m)
    blines: np.ndarray  # sliding B-line echo (d, lines + 2m)
    specular: np.ndarray  # sliding, weakly speckled: pleural line, air bronchograms
    cover: np.ndarray  # sliding: where A-lines are erased (B-lines, consolidation)
    lung_speckle: np.ndarray  # complex speckle field of the sliding layer (d, lines + 2m, 2)
    depth_gain: np.ndarray  # attenuation (d, 1)
    tgc: np.ndarray  # time-gain x patient gain (d, 1)
    m: int


def _build_layers(
    pat: Patient, rng: np.random.Generator, d: int, lines: int, max_shift_px: float
) -> _ClipLayers:
    p = PHYS
    scale = d / p.ref_side
    m = math.ceil(max_shift_px) + 2
    lp = lines + 2 * m
    shift = float(rng.uniform(-p.clip_shift, p.clip_shift))  # probe placed a bit elsewhere
    z = (np.arange(d, dtype=np.float32) / (d - 1))[:, None]
    u = (np.arange(lines, dtype=np.float32) / (lines - 1))[None, :]
    up = ((np.arange(lp, dtype=np.float32) - m) / (lines - 1))[None, :] + shift
    pl = pat.pleura
    px_z = 1.0 / (d - 1)  # one pixel of depth

    # pleural depth along the field: smooth bow + (sliding) irregularity
    bow = pl["z"] + pl["curve"] * ((up - 0.5 - shift) * 2) ** 2
    irr = _smooth_1d(rng, lp, pl["irregular_corr"] * lines)[None, :]
    zp_slide = bow + pl["irregular_px"] * scale * px_z * irr
    zp_static = pl["z"] + pl["curve"] * ((u - 0.5) * 2) ** 2

    # chest wall: skin, hypoechoic fat, muscle/fascia bands, slow lateral heterogeneity
    wl = pat.wall
    wall = np.full((d, lines), wl["base"], np.float32)
    wall *= np.where(z < wl["fat"], 0.55, 1.0).astype(np.float32)
    for zb, amp, thick, wave, freq, phase in wl["bands"]:
        zc = zb + wave * np.sin(2 * math.pi * freq * (u + shift) + phase)
        wall += amp * np.exp(-(((z - zc) / thick) ** 2)) * wl["base"] / 0.06
    wall += p.skin_amp * np.exp(-((z / p.skin_depth) ** 2))
    hetero = cv2.GaussianBlur(
        rng.standard_normal((d, lines)).astype(np.float32), (0, 0), 0.12 * lines, sigmaY=0.05 * d
    )
    hetero /= hetero.std() + 1e-6
    wall *= np.exp(p.wall_texture * hetero)
    above = _sigmoid((zp_static - 1.5 * px_z - z) / (0.6 * px_z))
    wall *= above

    # ribs: bright curved surface, shadow below (static: ribs do not slide)
    shadow = np.ones((d, lines), np.float32)
    for ur, hw, above_pl, amp in pat.ribs:
        ur = ur + float(rng.normal(0.0, 0.03)) - shift
        dist = (u - ur) / hw
        inside = _sigmoid((1.0 - np.abs(dist)) / 0.12)
        zr = pl["z"] - above_pl + 0.25 * above_pl * dist**2
        surface = amp * np.exp(-(((z - zr) / (2.2 * px_z * scale)) ** 2)) * inside
        below = _sigmoid((z - zr - 2 * px_z) / px_z) * inside
        shadow *= 1.0 - (1.0 - p.shadow) * below
        wall = wall * (1.0 - below) + surface

    # A-lines: reverberations at multiples of the (smooth) pleural depth; static
    al = pat.alines
    alines = np.zeros((d, lines), np.float32)
    thick = pl["thick_px"] * scale * px_z
    irr_blur = 1.0 / (1.0 + 0.35 * pl["irregular_px"])  # a rough pleura reverberates less
    amp = al["amp"] * pl["amp"] * al["keep"] * irr_blur
    n = 2
    while n * pl["z"] < 1.05 and amp > 0.01:
        za = n * zp_static
        alines += amp * np.exp(-(((z - za) / (thick * (1 + 0.4 * (n - 1)))) ** 2))
        amp *= al["decay"]
        n += 1

    # sliding layer
    below_pl = _sigmoid((z - zp_slide) / (0.8 * px_z))
    lung = pat.scanner["haze"] * below_pl * (1.0 + 0.6 * np.exp(-(z - zp_slide) / 0.08))
    th_z = pl["thick_px"] * scale * px_z
    frag = 1.0 - pl["fragment"] * _sigmoid(_smooth_1d(rng, lp, 0.015 * lines) * 3.0 - 1.0)
    specular = pl["amp"] * frag[None, :] * np.exp(-(((z - zp_slide) / th_z) ** 2))
    if pl["fragment"] > 0:  # a thickened pleura is also speckled and coarse
        lung = lung + 0.25 * pl["amp"] * pl["fragment"] * np.exp(
            -(((z - zp_slide - th_z) / (2 * th_z)) ** 2)
        )
    blines = np.zeros((d, lp), np.float32)
    cover = np.zeros((d, lp), np.float32)
    depth_below = np.clip(z - zp_slide, 0, None)
    for ub, wb, ab in pat.blines:
        width = wb * (1.0 + 0.6 * depth_below)
        prof = np.exp(-(((up - ub) / width) ** 2)) * below_pl
        blines += ab * prof * np.exp(-PHYS.bline_decay * depth_below)
        cover += prof * min(1.0, ab / 0.05)
    for c in pat.consolidations:
        ell = ((up - c["u"]) / c["half_w"]) ** 2 + ((z - zp_slide) / c["depth"]) ** 2
        wobble = 1 + 0.25 * _smooth_1d(rng, lp, 0.02 * lines)[None, :]
        reg = _sigmoid((wobble - ell) / 0.15) * below_pl
        lung = lung * (1 - reg) + reg * c["echo"]
        edge = np.exp(-(((np.sqrt(ell) - wobble) / 0.18) ** 2)) * below_pl
        specular = specular + 0.25 * edge * (np.sqrt(ell) > 0.6)
        cover += reg
        # the deep edge of a consolidation often seeds a B-line
        prof = np.exp(-(((up - c["u"]) / (c["half_w"] * 0.4)) ** 2))
        deep = _sigmoid((z - zp_slide - c["depth"]) / (2 * px_z))
        blines += 0.5 * pat.strength * 0.3 * prof * deep
    if pat.lobar is not None:
        lob = pat.lobar
        lat = _sigmoid((up - lob["u1"]) / 0.015) * _sigmoid((lob["u2"] - up) / 0.015)
        eff = lob["effusion"]
        shred = 1.0 + lob["shred"] * 0.25 * _smooth_1d(rng, lp, 0.045 * lines)[None, :]
        bottom = zp_slide + eff + lob["depth"] * shred
        reg = lat * _sigmoid((z - zp_slide - eff) / px_z) * _sigmoid((bottom - z) / (1.5 * px_z))
        tissue = lob["echo"] * (1.0 + 0.25 * _smooth_1d(rng, lp, 0.1 * lines)[None, :])
        lung = lung * (1 - reg) + reg * tissue
        if eff > 0:  # anechoic effusion between the pleura and the consolidated lung
            fluid = (
                lat
                * _sigmoid((z - zp_slide - 2 * th_z) / px_z)
                * _sigmoid((zp_slide + eff - z) / px_z)
            )
            lung = lung * (1 - fluid) + fluid * 0.002
            specular = specular * (1 - 0.5 * fluid)
        # shredded deep border: bright irregular fragments
        border = np.exp(-(((z - bottom) / (2.5 * px_z * scale)) ** 2)) * lat
        bits = _sigmoid(_smooth_1d(rng, lp, 0.01 * lines) * 3.0)[None, :]
        specular = specular + 0.45 * lob["shred"] * border * bits
        bronchi = _bronchogram_canvas(rng, lob, pl["z"] + eff, (d, lp), m, shift)
        specular = specular + lob["bronchi_amp"] * bronchi * reg
        cover += reg + lat * _sigmoid((z - bottom) / px_z) * 0.7
    cover = np.clip(cover, 0.0, 1.0)

    sc = pat.scanner
    sz = sc["speckle_axial"] * scale
    su = sc["speckle_lateral"] * scale
    wall_speckle = _mag(_complex_speckle(rng, (d, lines), sz, su))
    lung_speckle = _complex_speckle(rng, (d, lp), sz, su)
    depth_gain = np.exp(-sc["att"] * z)
    knots = np.interp(z[:, 0], np.linspace(0, 1, len(sc["tgc_knots"])), sc["tgc_knots"])
    tgc = np.exp(sc["tgc"] * z) * (10 ** ((knots[:, None] + sc["gain_db"]) / 20.0))
    f32 = np.float32
    return _ClipLayers(
        wall=wall.astype(f32),
        wall_speckle=wall_speckle.astype(f32),
        shadow=shadow.astype(f32),
        alines=alines.astype(f32),
        lung=lung.astype(f32),
        blines=blines.astype(f32),
        specular=specular.astype(f32),
        cover=cover.astype(f32),
        lung_speckle=lung_speckle,
        depth_gain=depth_gain.astype(f32),
        tgc=tgc.astype(f32),
        m=m,
    )


def _crop(a: np.ndarray, m: int, shift: float, lines: int) -> np.ndarray:
    """Lateral window of a padded sliding layer, shifted by ``shift`` px (linear interpolation)."""
    i = math.floor(shift)
    f = shift - i
    lo = a[:, m + i : m + i + lines]
    hi = a[:, m + i + 1 : m + i + 1 + lines]
    return lo * (1 - f) + hi * f


def render_clip(
    patient: Patient,
    rng: np.random.Generator,
    n_frames: int,
    height: int,
    width: int,
    fps: float,
) -> np.ndarray:
    """Render one clip of ``patient`` as a uint8 array (n_frames, height, width).

    Args:
        patient: from :func:`sample_patient`.
        rng: the clip's own generator (probe placement, breathing phase, speckle).
        n_frames: frames to render.
        height: output height in px.
        width: output width in px.
        fps: frame rate, sets the breathing speed in frames.
    """
    if min(height, width) < MIN_SIDE:
        raise ValueError(f"phantom frames must be at least {MIN_SIDE} px, got {height}x{width}")
    d, lines = height, width
    scale = d / PHYS.ref_side
    mo = patient.motion
    slide_px = mo["slide"] * (lines - 1)
    lay = _build_layers(patient, rng, d, lines, slide_px + 1)
    map_x, map_y, mask = _scan_maps(patient, height, width, d, lines)
    phase = float(rng.uniform(0, 2 * math.pi))
    axial_phase = phase + float(rng.normal(0.0, 0.4))
    drift = float(rng.normal(0.0, 0.15))  # px per frame of slow probe drift
    keep = PHYS.speckle_keep
    renew = math.sqrt(1.0 - keep**2)
    ar = PHYS.fresh_ar
    sc = patient.scanner
    sz, su = sc["speckle_axial"] * scale, sc["speckle_lateral"] * scale
    fresh = _complex_speckle(rng, (d, lines), sz, su)
    dr = sc["dr_db"]
    flicker_phase = rng.uniform(0, 2 * math.pi, 2)
    wall_echo = lay.wall * lay.wall_speckle
    out = np.empty((n_frames, height, width), np.uint8)
    for t in range(n_frames):
        omega = 2 * math.pi * t / (fps * mo["period"])
        s = slide_px * math.sin(omega + phase)
        s = float(np.clip(s + drift * t * 0.2, -lay.m + 1, lay.m - 2))
        fresh = ar * fresh + math.sqrt(1 - ar**2) * _complex_speckle(rng, (d, lines), sz, su)
        speck = keep * _crop(lay.lung_speckle, lay.m, s, lines) + renew * fresh
        mag = _mag(speck)
        flick = 1.0 + 0.08 * math.sin(omega * 1.7 + flicker_phase[0])
        cover = _crop(lay.cover, lay.m, s, lines)
        lung = _crop(lay.lung, lay.m, s, lines) + lay.alines * (1.0 - cover)
        lung = lung + flick * _crop(lay.blines, lay.m, s, lines)
        spec = _crop(lay.specular, lay.m, s, lines) * (0.55 + 0.45 * mag)
        echo = wall_echo + lay.shadow * (lung * mag + spec)
        noise = _mag(rng.standard_normal((d, lines, 2), dtype=np.float32)) * sc["noise"]
        amp = (echo * lay.depth_gain + noise) * lay.tgc
        db = 20.0 * np.log10(amp + 1e-6)
        beam = np.clip((db + dr) * (255.0 / dr), 0, 255).astype(np.float32)
        dz = mo["axial_px"] * scale * math.sin(omega + axial_phase)
        img = cv2.remap(
            beam, map_x, map_y + np.float32(dz), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        img[~mask] = 0
        out[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return out


# ---------------------------------------------------------------------------------------------
# the data set plan and writer


@dataclass(frozen=True)
class PlannedPatient:
    """One patient of the phantom data set: who they are and the seeds of their files."""

    number: int  # 1-based, unique over all classes
    patient_id: str
    label: str
    prefix: str
    probe: str
    n_clips: int
    n_images: int
    seed: np.random.SeedSequence  # anatomy
    clip_seeds: tuple[np.random.SeedSequence, ...]
    image_seeds: tuple[np.random.SeedSequence, ...]


def class_prefixes(params: Params) -> dict[str, str]:
    """File-name prefix per class: the first prefix in import.prefixes that maps to it."""
    out: dict[str, str] = {}
    for prefix, label in params.import_.prefixes.items():
        out.setdefault(label, prefix)
    missing = [c for c in params.base.classes if c not in out]
    if missing:
        raise ValueError(f"import.prefixes has no file-name prefix for class(es) {missing}")
    return out


def _check(ph: PhantomParams, classes: list[str]) -> None:
    lo, hi = (ph.clips_per_patient + [0, 0])[:2]
    problems = []
    if len(ph.clips_per_patient) != 2 or not 1 <= lo <= hi:
        problems.append(
            f"clips_per_patient must be [min, max] with 1 <= min <= max, got "
            f"{ph.clips_per_patient}"
        )
    if ph.frames_per_clip < 1:
        problems.append(f"frames_per_clip must be >= 1, got {ph.frames_per_clip}")
    if ph.fps <= 0:
        problems.append(f"fps must be > 0, got {ph.fps}")
    if min(ph.height, ph.width) < MIN_SIDE or ph.height % 2 or ph.width % 2:
        problems.append(f"height/width must be even and >= {MIN_SIDE}, got {ph.height}x{ph.width}")
    if not 0.0 <= ph.linear_fraction <= 1.0:
        problems.append(f"linear_fraction must be in [0, 1], got {ph.linear_fraction}")
    if not 0.0 <= ph.difficulty <= 1.0:
        problems.append(f"difficulty must be in [0, 1], got {ph.difficulty}")
    if ph.images_per_class < 0:
        problems.append(f"images_per_class must be >= 0, got {ph.images_per_class}")
    bad = {c: n for c, n in ph.patients.items() if n < 0}
    if bad:
        problems.append(f"patients must be >= 0, got {bad}")
    unknown = sorted(set(classes) - {"regular", "covid", "pneumonia", "viral"})
    if unknown:
        problems.append(f"the phantom simulates regular/covid/pneumonia/viral only, not {unknown}")
    if problems:
        raise ValueError("phantom parameters: " + "; ".join(problems))


def plan_phantom(params: Params, seed: int | None = None) -> list[PlannedPatient]:
    """Decide patients, probes, clip and image counts and every seed (no rendering)."""
    ph = params.phantom
    classes = params.base.classes
    _check(ph, classes)
    prefixes = class_prefixes(params)
    root = np.random.SeedSequence(ph.seed if seed is None else seed)
    total = sum(ph.patients[c] for c in classes)
    width = max(2, len(str(total)))
    plan: list[PlannedPatient] = []
    number = 0
    for label, class_ss in zip(classes, root.spawn(len(classes)), strict=True):
        n = ph.patients[label]
        plan_ss, patients_ss = class_ss.spawn(2)
        rng = np.random.Generator(np.random.PCG64(plan_ss))
        n_linear = math.floor(ph.linear_fraction * n + 0.5)
        linear = set(rng.permutation(n)[:n_linear].tolist())
        lo, hi = ph.clips_per_patient
        clips = rng.integers(lo, hi + 1, size=n)
        images = [len(range(i, ph.images_per_class, n)) if n else 0 for i in range(n)]
        for i, pss in enumerate(patients_ss.spawn(n)):
            number += 1
            anat, clip_root, image_root = pss.spawn(3)
            plan.append(
                PlannedPatient(
                    number=number,
                    patient_id=f"phantom_p{number:0{width}d}",
                    label=label,
                    prefix=prefixes[label],
                    probe="linear" if i in linear else "convex",
                    n_clips=int(clips[i]),
                    n_images=images[i],
                    seed=anat,
                    clip_seeds=tuple(clip_root.spawn(int(clips[i]))),
                    image_seeds=tuple(image_root.spawn(images[i])),
                )
            )
    return plan


def _mode(base: int) -> int:
    """``base`` permissions minus the process umask (what open()/mkdir() would give)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def _gen(ss: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(ss))


def patient_of(planned: PlannedPatient, params: Params) -> Patient:
    """The simulated anatomy of a planned patient."""
    return sample_patient(
        planned.label,
        planned.probe,
        _gen(planned.seed),
        params.phantom.difficulty,
        planned.patient_id,
    )


def simulate_patient(
    planned: PlannedPatient, params: Params
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Render all clips (n, H, W) and still images (H, W) of one planned patient, as uint8."""
    ph = params.phantom
    pat = patient_of(planned, params)
    clips = [
        render_clip(pat, _gen(s), ph.frames_per_clip, ph.height, ph.width, ph.fps)
        for s in planned.clip_seeds
    ]
    images = [
        render_clip(pat, _gen(s), 1, ph.height, ph.width, ph.fps)[0] for s in planned.image_seeds
    ]
    return clips, images


def _stem(pp: PlannedPatient) -> str:
    return f"{pp.prefix}_{pp.patient_id}"


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write grey frames as an mp4v clip and check it decodes back with every frame."""
    n, h, w = frames.shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), fps, (w, h), True)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot open a {VIDEO_FOURCC} writer for {path}")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = 0
    try:
        while cap.read()[0]:
            decoded += 1
    finally:
        cap.release()
    if decoded != n:
        raise RuntimeError(f"{path} decodes to {decoded} frames, wrote {n}")


def _readme(params: Params, seed: int, counts: dict[str, dict[str, int]]) -> str:
    ph = params.phantom
    rows = "\n".join(
        f"| {c} | {v['patients']} | {v['clips']} | {v['frames']} | {v['images']} |"
        for c, v in counts.items()
    )
    return f"""# Synthetic lung-ultrasound phantom (not patient data)

Every file here was **simulated** by `lusaug phantom` (src/lusaug/data/phantom.py):
seed {seed}, difficulty {ph.difficulty}, {ph.height}x{ph.width} px at {ph.fps:g} fps.
No patient, scanner or real recording is involved; license {LICENSE}.

Layout follows the POCUS collection: `pocus_videos/{{convex,linear}}/` (clips),
`pocus_images/{{convex,linear}}/` (still PNGs) and `metadata.csv` (one row per file: file, label,
patient_id, probe, source, license). Class from the file-name prefix, patient from the
`phantom_pNN` part.

| class | patients | clips | frames | images |
|---|---|---|---|---|
{rows}
"""


def write_phantom(
    out: Path, params: Params, seed: int | None = None, force: bool = False
) -> dict[str, Any]:
    """Write the phantom as a POCUS-style raw folder at ``out`` (atomically) and summarise it.

    Args:
        out: destination folder (data/raw); replaced only when ``force`` or empty.
        params: typed config; reads ``phantom``, ``base.classes`` and ``import.prefixes``.
        seed: overrides ``phantom.seed``.
        force: replace a non-empty ``out``.

    Returns:
        Counts per class (patients, clips, frames, images), totals, seed and seconds taken.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} is not empty; pass --force (force=True) to replace it")
    start = time.perf_counter()
    seed = params.phantom.seed if seed is None else seed
    plan = plan_phantom(params, seed)
    ph = params.phantom
    counts = {
        c: {"patients": 0, "clips": 0, "frames": 0, "images": 0} for c in params.base.classes
    }
    rows = []
    with atomic_path(out, is_dir=True) as tmp:
        tmp.chmod(_mode(0o777))  # mkdtemp makes it private; data/raw is an ordinary folder
        for pp in tqdm(plan, desc="phantom", unit="patient", disable=None):
            clips, images = simulate_patient(pp, params)
            c = counts[pp.label]
            c["patients"] += 1
            for k, frames in enumerate(clips, start=1):
                rel = Path(VIDEO_DIR) / pp.probe / f"{_stem(pp)}_c{k}{VIDEO_SUFFIX}"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                write_video(tmp / rel, frames, ph.fps)
                rows.append((rel.as_posix(), pp.label, pp.patient_id, pp.probe))
                c["clips"] += 1
                c["frames"] += len(frames)
            for k, img in enumerate(images, start=1):
                rel = Path(IMAGE_DIR) / pp.probe / f"{_stem(pp)}_img{k}.png"
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                if not cv2.imwrite(str(tmp / rel), img):
                    raise RuntimeError(f"could not write {rel}")
                rows.append((rel.as_posix(), pp.label, pp.patient_id, pp.probe))
                c["images"] += 1
        meta = pd.DataFrame(rows, columns=["file", "label", "patient_id", "probe"])
        meta["source"] = SOURCE
        meta["license"] = LICENSE
        meta = meta[RAW_METADATA_COLUMNS].sort_values("file", kind="stable")
        meta.to_csv(tmp / RAW_METADATA_NAME, index=False, lineterminator="\n")
        (tmp / "README.md").write_text(_readme(params, seed, counts))
    totals = {
        k: sum(v[k] for v in counts.values()) for k in ("patients", "clips", "frames", "images")
    }
    summary = {
        "out": str(out),
        "seed": seed,
        "per_class": counts,
        **totals,
        "seconds": round(time.perf_counter() - start, 2),
    }
    logger.info("phantom: %s", summary)
    return summary


# ---------------------------------------------------------------------------------------------
# the README grid


def phantom_grid(
    params: Params, out_png: Path, per_class: int = 4, seed: int | None = None
) -> Path:
    """Save a grid of phantom frames (rows = classes, columns = patients) as a small grey PNG.

    Frames come from the same plan as :func:`write_phantom` (first clip of each class's first
    ``per_class`` patients, middle frame), so the grid shows what the data set holds.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    ph = params.phantom
    plan = plan_phantom(params, seed)
    classes = params.base.classes
    fig, axes = plt.subplots(
        len(classes), per_class, figsize=(1.6 * per_class + 0.6, 1.7 * len(classes)), squeeze=False
    )
    for r, label in enumerate(classes):
        pats = [pp for pp in plan if pp.label == label][:per_class]
        for c in range(per_class):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c >= len(pats):
                continue
            pp = pats[c]
            pat = patient_of(pp, params)
            n = min(ph.frames_per_clip, 13)
            frames = render_clip(pat, _gen(pp.clip_seeds[0]), n, ph.height, ph.width, ph.fps)
            ax.imshow(frames[n // 2], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"{pp.patient_id} ({pp.probe})", fontsize=6)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(
        f"lusaug phantom (difficulty {ph.difficulty}), middle frame of clip 1", fontsize=8
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    buf.seek(0)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp, Image.open(buf) as im:
        im.convert("L").save(tmp, format="PNG", optimize=True)
        tmp.chmod(_mode(0o666))
    return out_png
