"""Attribution family: image → heat map (saliency, guided backprop, Grad-CAM, occlusion)."""
