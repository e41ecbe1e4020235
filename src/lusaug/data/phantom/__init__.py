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

Modules: ``anatomy`` (physics ranges, patient sampling, class signs), ``render`` (one clip of a
patient), ``dataset`` (the plan, the writer of ``data/raw`` and its README) and ``grid`` (the
preview PNG). The public names are re-exported here.
"""

from lusaug.data.phantom.anatomy import (
    MIN_SIDE,
    PHYS,
    PROBES,
    Patient,
    Physics,
    sample_patient,
    sign_strength,
)
from lusaug.data.phantom.dataset import (
    IMAGE_DIR,
    LICENSE,
    SOURCE,
    VIDEO_DIR,
    VIDEO_FOURCC,
    VIDEO_SUFFIX,
    PlannedPatient,
    class_prefixes,
    patient_of,
    plan_phantom,
    simulate_patient,
    write_phantom,
    write_video,
)
from lusaug.data.phantom.grid import phantom_grid
from lusaug.data.phantom.render import render_clip

__all__ = [
    "IMAGE_DIR",
    "LICENSE",
    "MIN_SIDE",
    "PHYS",
    "PROBES",
    "SOURCE",
    "VIDEO_DIR",
    "VIDEO_FOURCC",
    "VIDEO_SUFFIX",
    "Patient",
    "Physics",
    "PlannedPatient",
    "class_prefixes",
    "patient_of",
    "phantom_grid",
    "plan_phantom",
    "render_clip",
    "sample_patient",
    "sign_strength",
    "simulate_patient",
    "write_phantom",
    "write_video",
]
