"""OCI images as a source of containers, beside bundles: references, the workstation's image store (pulled
with skopeo), the image's config as the container's process, and its layers merged into a template's tar
stream (docs/images.md)."""
