"""Files ``ductile config init`` writes, shipped inside the package (package data)."""
