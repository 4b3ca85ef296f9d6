"""Which files are images: the extensions cskd reads (case-insensitive), in image folders and in
the publishers' archives alike."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
