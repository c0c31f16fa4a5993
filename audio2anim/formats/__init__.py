"""Exchange formats: animation files that other tools read and write.

`animation` (the `Animation` container and frame-rate resampling), `livelink_csv` (Live Link
Face CSV takes), `animation_json` (per-frame ARKit and Oculus viseme weights as JSON; viseme
CSV), `rhubarb` (Rhubarb Lip Sync mouth cues: TSV, JSON, XML, Moho .dat) and `gltf_animation`
(a morph-target weight animation added to a GLB/glTF/VRM model).
"""
