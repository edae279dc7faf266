"""Models of rgbxseg: encoders, fusion layers, segmenters and the packaged pretrained weights."""
