"""Images: decoding with limits, the SQL helpers (resize, base64, info), loading files and URLs
under the administrators' allow-list, and OCR."""
