"""The E2E pixel channels: names, the integer codes the numba kernels use, and what fills them.

Every channel is a 2-D map on the stitched ECAL crystal grid (280 x 360, dataformats.geometry):

=============  ======  =====================================================================
name           code    pixel value
=============  ======  =====================================================================
track_pt       0       sum of track pT (GeV) at the track's ECAL-face crystal
track_d0       1       sum of signed d0 (cm; or d0/sigma with ``impact: significance``) of
                       tracks with |dz| < dz_max (E2E: 0.1 cm)
track_dz       2       sum of dz (cm; or dz/sigma), same tracks
ecal           3       ECAL crystal energy (GeV)
hcal           4       HCAL tower energy upsampled to its 5 x 5 crystals at E/25 (GeV)
bpix1..bpix4   5..8    +1 per pixel-barrel hit in the crystal seen from the primary vertex
tib1, tib2     9, 10   +1 per inner-barrel strip hit
tob1, tob2     11, 12  +1 per outer-barrel strip hit
=============  ======  =====================================================================

Tracks that do not reach the ECAL (``Track_ecal_ieta == -1``) fill no pixel.
"""

from __future__ import annotations

from dataformats.geometry import TRACKER_LAYER_NAMES

#: Channel names in code order (code = index).
CHANNELS: tuple[str, ...] = ("track_pt", "track_d0", "track_dz", "ecal", "hcal") + tuple(
    name.lower() for name in TRACKER_LAYER_NAMES
)
CHANNEL_CODE: dict[str, int] = {name: i for i, name in enumerate(CHANNELS)}
#: Code of the first tracker-layer channel; layer L (TrackerHit.layer) fills code FIRST_LAYER_CODE + L.
FIRST_LAYER_CODE = CHANNEL_CODE["bpix1"]
N_CHANNEL_CODES = len(CHANNELS)

#: Which hits tree collection each channel reads.
CHANNEL_COLLECTION: dict[str, str] = {
    "track_pt": "Track",
    "track_d0": "Track",
    "track_dz": "Track",
    "ecal": "EcalHit",
    "hcal": "HcalHit",
    **{name: "TrackerHit" for name in CHANNELS[FIRST_LAYER_CODE:]},
}
