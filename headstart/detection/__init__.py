"""Detection: transfer a detector (Faster / Mask R-CNN) to new object classes. See README, Detection."""
