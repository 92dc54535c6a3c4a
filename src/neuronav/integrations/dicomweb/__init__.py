"""DICOMweb message formats (PS3.18): multipart/related bodies and the DICOM JSON model.

The HTTP routes are :mod:`neuronav.service.routes.dicomweb`; what they do (which studies an actor may
query, what a study holds, storing what STOW-RS sends) is :mod:`neuronav.workflow.dicomweb`.
"""

from neuronav.integrations.dicomweb.multipart import MultipartError, related_content_type, split_related, write_related

__all__ = ["MultipartError", "related_content_type", "split_related", "write_related"]
