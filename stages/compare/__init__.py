"""`sal3d compare`: many prediction sets scored against one evaluated set, and their comparison."""
