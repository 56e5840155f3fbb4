"""File walking and parsing: the tree walk, metadata extraction, header readers, the parser sandbox."""
