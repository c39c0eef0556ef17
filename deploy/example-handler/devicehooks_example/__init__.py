"""An example handler package for devicehooks."""
