"""Phantom clip rendering: beam-space echo layers, speckle and scan conversion to frames.

:func:`render_clip` turns a :class:`~lusaug.data.phantom.anatomy.Patient` into a uint8 clip:
static chest-wall and A-line layers, a sliding lung layer (pleura, B-lines, consolidations),
Rayleigh speckle partly renewed frame to frame, attenuation, time-gain and log compression, then
a convex (fan) or linear scan conversion with black outside the field of view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lusaug.data.phantom.anatomy import MIN_SIDE, PHYS, Patient


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
