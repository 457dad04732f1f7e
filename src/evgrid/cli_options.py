"""Help texts shared by several commands (one wording for one behaviour)."""

OUT_HELP = (
    "output folder: a new one appears whole; a folder evgrid wrote before is updated file by "
    "file; a non-empty folder evgrid did not write is refused (see --overwrite); nothing "
    "evgrid did not write is ever deleted"
)
OVERWRITE_HELP = (
    "write into a non-empty folder evgrid did not write: replaces same-named files, deletes "
    "nothing"
)
