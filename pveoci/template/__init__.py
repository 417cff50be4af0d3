"""Templates: packing a rootfs into a content-addressed tarball and getting it onto the nodes."""
