"""PathMNIST class names: the short codes of NCT-CRC-HE-100K and medmnist's long names."""

SHORT_NAMES: tuple[str, ...] = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
LONG_NAMES: tuple[str, ...] = (
    "adipose",
    "background",
    "debris",
    "lymphocytes",
    "mucus",
    "smooth muscle",
    "normal colon mucosa",
    "cancer-associated stroma",
    "colorectal adenocarcinoma epithelium",
)
NUM_CLASSES = len(SHORT_NAMES)
