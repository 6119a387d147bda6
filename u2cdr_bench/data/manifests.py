"""Manifests of the real image datasets, as Python data: domains, classes, counts, archives, layouts.

Everything here is hard-coded on purpose (the package never reads files outside its data home at run time).
Sources:

* class orders of Office-31 and Office-Home: the label indices of the public image lists
  (``image_list/*.txt``, one ``relative/path label`` per line, labels 0-based);
* expected image counts: PACS from the dataset itself (per class), Office-31 / Office-Home / DomainNet from
  pytorch-adapt's ``check_length`` (anchors.md §7) and the dataset papers;
* archive URLs and checksums: anchors.md §10. A checksum agreed on by several independent sources is marked
  ``verified``; a single-source one is not (``download`` says so when it uses it).

A dataset is stored under ``<data home>/<manifest name>/``. The loader accepts several folder layouts per
domain (:attr:`DomainManifest.folders`, tried in order, directly under the dataset folder or under one of the
archive's wrapper folders :attr:`DatasetManifest.wrappers`); inside a domain folder there is one sub-folder
per class holding the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Archive",
    "DatasetManifest",
    "DomainManifest",
    "MANIFESTS",
    "get_manifest",
    "summary_line",
]


@dataclass(frozen=True)
class Archive:
    """One downloadable file.

    Attributes:
        filename: name the file is stored under while downloading (``<dataset>/.downloads/<filename>``).
        url: where to get it.
        checksum: ``"<algo>:<hex>"`` with algo ``md5``, ``sha1`` or ``sha256``; the hex may be a prefix
            (at least 8 characters) when only a prefix is published (e.g. the MoCo checkpoints). Empty when no
            checksum is known: such archives are never fetched automatically.
        verified: the checksum is confirmed by at least two independent sources.
        domains: the domains this archive holds (for ``download --domain``); empty = all / metadata.
        extract: unpack after download (zip, tar, tar.gz, tgz, tar.bz2, tar.xz).
        note: provenance of the URL and checksum.
    """

    filename: str
    url: str
    checksum: str = ""
    verified: bool = False
    domains: tuple[str, ...] = ()
    extract: bool = True
    note: str = ""


@dataclass(frozen=True)
class DomainManifest:
    """One domain of a dataset.

    Attributes:
        name: canonical domain name (used in records, cache paths and ``--pairs``).
        abbrev: the paper's abbreviation (``A``, ``Qu`` ...).
        aliases: other accepted spellings for ``--pairs``.
        folders: relative folder paths that may hold this domain's class folders, tried in order.
        expected_count: number of images of the classes in :attr:`DatasetManifest.class_names`, or ``None``
            when it is not known (DomainNet-7).
        expected_class_counts: per-class image counts in class order, when known (PACS).
        expected_total_all_classes: for a class subset of a bigger dataset (DomainNet-7), the image count of
            the whole domain over all of its classes (checked by ``verify`` as a note, never as a failure).
    """

    name: str
    abbrev: str
    aliases: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    expected_count: int | None = None
    expected_class_counts: tuple[int, ...] | None = None
    expected_total_all_classes: int | None = None


@dataclass(frozen=True)
class DatasetManifest:
    """A real image dataset.

    Attributes:
        name: registry name and folder name under the data home.
        title: human-readable name.
        domains: the domains in display order.
        class_names: class names in the fixed label order (labels index this tuple).
        pairs: default directed (query, gallery) pairs; empty = all ordered pairs.
        archives: downloadable files (empty = must be placed by hand).
        wrappers: top-level folders that published archives unpack into (searched as well).
        class_subset: the dataset uses a subset of the class folders found (DomainNet-7): other class folders
            are ignored silently instead of being reported as unknown.
        paper_key: the key of the paper's own tables, if any.
        method_profile: the official per-dataset configuration of the baselines this dataset uses
            (``DatasetSpec.method_profile``; docs/baselines.md).
        citation: the dataset's paper.
        layouts: the accepted folder layouts, for ``info`` and error messages.
        notes: anything a user must know (licences, reconstructions, known anomalies).
    """

    name: str
    title: str
    domains: tuple[DomainManifest, ...]
    class_names: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...] = ()
    archives: tuple[Archive, ...] = ()
    wrappers: tuple[str, ...] = ()
    class_subset: bool = False
    paper_key: str | None = None
    method_profile: str | None = None
    citation: str = ""
    layouts: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def domain(self, name: str) -> DomainManifest:
        """The domain called ``name`` (canonical name, abbreviation or alias, case-insensitive)."""
        low = name.lower()
        for d in self.domains:
            if low in (d.name.lower(), d.abbrev.lower(), *(a.lower() for a in d.aliases)):
                return d
        raise KeyError(name)

    @property
    def expected_total(self) -> int | None:
        counts = [d.expected_count for d in self.domains]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


# --------------------------------------------------------------------------------------------------- PACS
PACS_CLASSES: tuple[str, ...] = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")

PACS = DatasetManifest(
    name="pacs",
    title="PACS",
    domains=(
        DomainManifest(
            "art_painting",
            "A",
            aliases=("Ar", "art", "art-painting", "artpainting"),
            folders=("art_painting",),
            expected_count=2048,
            expected_class_counts=(379, 255, 285, 184, 201, 295, 449),
        ),
        DomainManifest(
            "cartoon",
            "C",
            aliases=("Ca",),
            folders=("cartoon",),
            expected_count=2344,
            expected_class_counts=(389, 457, 346, 135, 324, 288, 405),
        ),
        DomainManifest(
            "photo",
            "P",
            aliases=("Ph",),
            folders=("photo",),
            expected_count=1670,
            expected_class_counts=(189, 202, 182, 186, 199, 280, 432),
        ),
        DomainManifest(
            "sketch",
            "S",
            aliases=("Sk",),
            folders=("sketch",),
            expected_count=3929,
            expected_class_counts=(772, 740, 753, 608, 816, 80, 160),
        ),
    ),
    class_names=PACS_CLASSES,
    archives=(),
    wrappers=("PACS", "kfold", "pacs"),
    # No baseline ships a PACS script. 7 classes and 1.7k-3.9k images per domain match the DomainNet-7
    # protocol (7 classes, a few thousand images per domain) of UCDIR's and DG-UCDIR's DomainNet scripts;
    # DG-UCDIR runs PACS with its one (DomainNet) script, changing only the domain pair (its README;
    # docs/baselines.md).
    method_profile="domainnet",
    citation="Li, Yang, Song, Hospedales. Deeper, Broader and Artier Domain Generalization. ICCV 2017.",
    layouts=(
        "pacs/<domain>/<class>/<image>  (domains art_painting, cartoon, photo, sketch)",
        "pacs/PACS/<domain>/<class>/<image> or pacs/kfold/<domain>/<class>/<image>  (the published archive)",
    ),
    notes=(
        "No archive with a checksum confirmed by independent sources is known, so PACS is placed by hand: "
        "DomainBed's download script (domainbed/scripts/download.py) fetches it from Google Drive.",
        "Abbreviations A, C, P, S (DomainBed's); Ar, Ca, Ph, Sk are accepted as aliases.",
        "Every image is 227x227; JPEG for art_painting, cartoon and photo, PNG for sketch.",
    ),
)

# ---------------------------------------------------------------------------------------------- Office-31
OFFICE31_CLASSES: tuple[str, ...] = (
    "back_pack", "bike", "bike_helmet", "bookcase", "bottle", "calculator", "desk_chair", "desk_lamp",
    "desktop_computer", "file_cabinet", "headphones", "keyboard", "laptop_computer", "letter_tray",
    "mobile_phone", "monitor", "mouse", "mug", "paper_notebook", "pen", "phone", "printer", "projector",
    "punchers", "ring_binder", "ruler", "scissors", "speaker", "stapler", "tape_dispenser", "trash_can",
)  # fmt: skip

OFFICE31 = DatasetManifest(
    name="office31",
    title="Office-31",
    domains=(
        DomainManifest(
            "amazon", "A", aliases=("Am",), folders=("amazon/images", "amazon"), expected_count=2817
        ),
        DomainManifest("dslr", "D", aliases=("Ds",), folders=("dslr/images", "dslr"), expected_count=498),
        DomainManifest(
            "webcam", "W", aliases=("We",), folders=("webcam/images", "webcam"), expected_count=795
        ),
    ),
    class_names=OFFICE31_CLASSES,
    archives=(
        Archive(
            filename="domain_adaptation_images.tar.gz",
            url="https://drive.google.com/uc?export=download&id=0B4IapRTv9pJ1WGZVd1VDMmhwdlE",
            checksum="sha1:7aa25a86f3880b6e79283227816f9d4d8506d636",
            verified=False,
            domains=("amazon", "dslr", "webcam"),
            note="Saenko et al.'s archive on Google Drive; SHA-1 from one third-party script (single source, "
            "unverified). Unpacks to amazon/images/<class>/, dslr/images/<class>/, webcam/images/<class>/.",
        ),
    ),
    wrappers=("domain_adaptation_images", "Office31", "office31", "office"),
    paper_key="office31",
    method_profile="office31",
    citation="Saenko, Kulis, Fritz, Darrell. Adapting Visual Category Models to New Domains. ECCV 2010.",
    layouts=(
        "office31/<domain>/images/<class>/<image>  (the published archive and the image lists' "
        "amazon/images/<class>/... paths)",
        "office31/<domain>/<class>/<image>",
    ),
    notes=(
        "Counts 2817 / 498 / 795 (pytorch-adapt); skada's SURF features have 2813 for amazon.",
        "Mirrors without checksums (tllib's Tsinghua cloud links, pytorch-adapt's dead Box link) "
        "are listed in "
        "docs/data.md; they are never fetched automatically.",
    ),
)

# -------------------------------------------------------------------------------------------- Office-Home
OFFICEHOME_CLASSES: tuple[str, ...] = (
    "Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator", "Calendar",
    "Candles", "Chair", "Clipboards", "Computer", "Couch", "Curtains", "Desk_Lamp", "Drill", "Eraser",
    "Exit_Sign", "Fan", "File_Cabinet", "Flipflops", "Flowers", "Folder", "Fork", "Glasses", "Hammer",
    "Helmet", "Kettle", "Keyboard", "Knives", "Lamp_Shade", "Laptop", "Marker", "Monitor", "Mop", "Mouse",
    "Mug", "Notebook", "Oven", "Pan", "Paper_Clip", "Pen", "Pencil", "Postit_Notes", "Printer", "Push_Pin",
    "Radio", "Refrigerator", "Ruler", "Scissors", "Screwdriver", "Shelf", "Sink", "Sneakers", "Soda",
    "Speaker", "Spoon", "TV", "Table", "Telephone", "ToothBrush", "Toys", "Trash_Can", "Webcam",
)  # fmt: skip

OFFICEHOME = DatasetManifest(
    name="officehome",
    title="Office-Home",
    domains=(
        DomainManifest("art", "A", aliases=("Ar",), folders=("Art", "art"), expected_count=2427),
        DomainManifest("clipart", "C", aliases=("Cl",), folders=("Clipart", "clipart"), expected_count=4365),
        DomainManifest("product", "P", aliases=("Pr",), folders=("Product", "product"), expected_count=4439),
        DomainManifest(
            "real",
            "R",
            aliases=("Re", "Rw", "real_world", "real world", "realworld"),
            folders=("Real World", "Real_World", "RealWorld", "Real", "real_world", "real"),
            expected_count=4357,
        ),
    ),
    class_names=OFFICEHOME_CLASSES,
    archives=(
        Archive(
            filename="OfficeHomeDataset_10072016.zip",
            url="https://drive.google.com/uc?export=download&id=1uY0pj7oFsjMxRwaD3Sxy0jgel0fsYXLC",
            checksum="md5:b1c14819770c4448fd5b6d931031c91c",
            verified=True,
            domains=("art", "clipart", "product", "real"),
            note="DomainBed's Google Drive mirror (domainbed/scripts/download.py); the MD5 is agreed on "
            "by four independent third-party loaders. Unpacks to "
            "OfficeHomeDataset_10072016/{Art,Clipart,Product,"
            "Real World}/<class>/.",
        ),
    ),
    wrappers=("OfficeHomeDataset_10072016", "OfficeHome", "office_home", "office-home"),
    paper_key="officehome",
    method_profile="officehome",
    citation="Venkateswara, Eusebio, Chakraborty, Panchanathan. Deep Hashing Network for Unsupervised Domain "
    "Adaptation. CVPR 2017.",
    layouts=(
        "officehome/OfficeHomeDataset_10072016/<Art|Clipart|Product|Real World>/<class>/<image>  "
        "(the published archive)",
        "officehome/<Art|Clipart|Product|Real World|Real_World|RealWorld|Real>/<class>/<image>  "
        "(image lists write Real/..., tllib writes Real_World/...)",
    ),
    notes=(
        "65 classes (the paper's '67' is a typo, paper-spec §7 #21).",
        "The published 'Real World' folder contains a space; Real_World, RealWorld and Real are "
        "accepted too.",
    ),
)

# ---------------------------------------------------------------------------------------------- DomainNet
DOMAINNET7_CLASSES: tuple[str, ...] = ("bird", "feather", "teapot", "tiger", "whale", "windmill", "zebra")

_DN_BASE = "http://csr.bu.edu/ftp/visda/2019/multi-source/"
_DN = (
    # name, abbrev, archive path, md5, train+test count of the cleaned version (pytorch-adapt, anchors §7)
    ("quickdraw", "Qu", "quickdraw.zip", "bdc1b6f09f277da1a263389efe0c7a66", 120750 + 51750),
    ("clipart", "Cl", "groundtruth/clipart.zip", "cd0d8f2d77a4e181449b78ed62bccf1e", 33525 + 14604),
    ("painting", "Pa", "groundtruth/painting.zip", "1ae32cdb4f98fe7ab5eb0a351768abfd", 50416 + 21850),
    ("infograph", "In", "infograph.zip", "720380b86f9e6ab4805bb38b6bd135f8", 36023 + 15582),
    ("sketch", "Sk", "sketch.zip", "658d8009644040ff7ce30bb2e820850f", 48212 + 20916),
    ("real", "Re", "real.zip", "dcc47055e8935767784b7162e7c7cca6", 120906 + 52041),
)

DOMAINNET = DatasetManifest(
    name="domainnet",
    title="DomainNet-7 (the paper's 7-class protocol)",
    domains=tuple(
        DomainManifest(
            name,
            abbrev,
            aliases=(name[:2],) if name[:2].lower() != abbrev.lower() else (),
            folders=(name,),
            expected_count=None,
            expected_total_all_classes=total,
        )
        for name, abbrev, _, _, total in _DN
    ),
    class_names=DOMAINNET7_CLASSES,
    pairs=(
        ("quickdraw", "clipart"),
        ("clipart", "painting"),
        ("painting", "infograph"),
        ("infograph", "sketch"),
        ("sketch", "real"),
    ),
    archives=tuple(
        Archive(
            filename=path.rsplit("/", 1)[-1],
            url=_DN_BASE + path,
            checksum=f"md5:{md5}",
            verified=True,
            domains=(name,),
            note="DomainNet (cleaned version) from the VisDA-2019 host, as DomainBed's download script; "
            f"MD5 agreed on by at least three third-party loaders. Unpacks to {name}/<class>/.",
        )
        for name, _, path, md5, _ in _DN
    ),
    wrappers=("domain_net", "DomainNet", "domainnet"),
    class_subset=True,
    paper_key="domainnet",
    method_profile="domainnet",
    citation="Peng, Bai, Xia, Huang, Saenko, Wang. Moment Matching for Multi-Source Domain Adaptation. "
    "ICCV 2019.",
    layouts=(
        "domainnet/<domain>/<class>/<image>  (the published zips and the image lists' clipart/<class>/... "
        "paths; only the 7 classes are read, other class folders are ignored)",
    ),
    notes=(
        "The class list is a reconstruction: the paper (following UCDIR) uses '7 classes that "
        "contain more than "
        "200 samples' without naming them; two third-party UCDIR reimplementations use bird, "
        "feather, teapot, "
        "tiger, whale, windmill, zebra (paper-spec §3, §7 #16).",
        "All images of the 7 classes found in the domain folders are used (the official train and "
        "test splits "
        "together); the paper does not say which split it used (paper-spec §7 #14).",
        "The paper's pairs: Qu->Cl, Cl->Pa, Pa->In, In->Sk, Sk->Re.",
        "windmill is not among the 126 classes of DomainNet-126 (image lists of that subset have no "
        "windmill).",
        "DomainBed removes 9,431 duplicate images; this loader keeps every file.",
    ),
)

MANIFESTS: dict[str, DatasetManifest] = {m.name: m for m in (PACS, OFFICE31, OFFICEHOME, DOMAINNET)}
"""Every real dataset manifest by name."""


def summary_line(manifest: DatasetManifest) -> str:
    """The one line ``list datasets`` shows for a real dataset (also its registry summary)."""
    n = len(manifest.class_names)
    return f"{manifest.title}: {len(manifest.domains)} domains, {n} classes (real images)"


def get_manifest(name: str) -> DatasetManifest:
    """The manifest called ``name``; a UserError listing the valid names otherwise."""
    from ..errors import unknown_name

    if name not in MANIFESTS:
        raise unknown_name("dataset", name, MANIFESTS)
    return MANIFESTS[name]
