"""One plain sentence for every term the app shows, so a student meets each word explained where
it appears (help icons) and all of them together on the Overview's glossary."""

from __future__ import annotations

import re

# What Markdown, and Streamlit's additions to it (:red[...], :material/icon:, $math$), read as markup.
_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=^&])")

GLOSSARY: dict[str, str] = {
    "contrastive learning": "Training an encoder so that two views of the same image land close together and "
                            "images that differ land far apart, without being told what the classes are (or, for "
                            "SupCon, using them only to say which images belong together).",
    "embedding": "The list of numbers the encoder turns an image into; similar images should get nearby lists.",
    "augmentation": "A random change to an image (a crop, a rotation, a colour shift) that should not change what "
                    "it shows; an augmented copy is an image's positive.",
    "positive / negative": "A positive is a view that should land near the anchor image (its augmented copy or an "
                           "image of its class); a negative is one that should land far away.",
    "fer": "The study's augmentation (from facial-expression work): pad the image, rotate it a little and scale it.",
    "simclr": "SimCLR's augmentation: a random crop resized back, a horizontal flip, colour jitter and blur.",
    "1x28x28": "The image format: 1 colour channel (grey), 28 by 28 pixels; 3x32x32 is colour, 32 by 32.",
    "pairwise loss": "The study's first loss: pull an image and its positive together (cosine similarity), push an "
                     "image and its negative apart.",
    "triplet loss": "The study's second loss: an anchor must be closer to its positive than to its negative by a "
                    "margin of 1.",
    "SupCon": "Supervised contrastive loss: every image of the same class in the batch counts as a positive, all "
              "others as negatives.",
    "NT-Xent": "SimCLR's loss: each image must pick out its own augmented copy among all the other images in the "
               "batch.",
    "linear probe": "How well a straight-line classifier (logistic regression) can tell the classes apart from the "
                    "embeddings alone: high means the classes are separated.",
    "top-3": "How often the true class is among the linear probe's three most likely classes.",
    "kNN-30": "How often the majority class of an image's 30 nearest embeddings is its own class: it checks "
              "neighbourhoods, not straight lines.",
    "Precision@10": "Of each image's 10 nearest other images, the share that has the same class (what retrieval "
                    "would show you).",
    "paper protocol": "The study's way of scoring: the probe is fitted on 80 % of the test images' embeddings and "
                      "scored on the other 20 %.",
    "standard protocol": "The usual way: the probe is fitted on the training images' embeddings and scored on all "
                         "test images.",
    "bf16": "bfloat16, a shorter number format that some CPUs compute twice as fast; training uses it where the "
            "hardware supports it natively and keeps the weights in full precision.",
    "complete": "Whether a data split has all its images here (MNIST's full train split is 60,000 images; a partial "
                "copy has fewer).",
    "t-SNE / UMAP / PCA": "Three ways to draw high-dimensional embeddings on a flat map: t-SNE and UMAP keep "
                          "neighbours together, PCA keeps the largest directions of variation.",
    "alignment": "How close an image's two augmented views land (lower is closer).",
    "uniformity": "How evenly the embeddings spread over the sphere (more negative is more spread out; 0 means "
                  "everything collapsed onto one point).",
    "effective rank": "How many directions the embeddings really use (RankMe); 1 means they collapsed onto a line.",
    "collapsed": "Every test image points in nearly the same direction (uniformity above -0.05) and the embeddings "
                 "use fewer than three directions (effective rank below 3); accuracy is not part of it.",
    "95 % interval": "The range an accuracy could have landed in on another draw of as many test images (Wilson's "
                     "score interval); the fewer images scored, the wider.",
}


def explain(term: str, data: str = "") -> str:
    """A help text: the term's sentence, then (when given) which data the number came from."""
    text = GLOSSARY[term]
    return f"{text} {data}".strip()


def glossary_markdown() -> str:
    return "\n".join(f"- **{term}**: {sentence}" for term, sentence in GLOSSARY.items())


def plain(text) -> str:
    """A name a person chose (a class folder, a file, an image set) to put into Streamlit Markdown
    (markdown, captions, image captions, spinners): every mark Markdown reads is backslash-escaped
    and line breaks become spaces, so ``**bold** [x](javascript:...)`` and ``__init__`` show as typed."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).splitlines()))


def class_counts(classes: list[str], counts) -> str:
    """``"class 9: 1 image; class 4: 3 images"``, largest first: a count beside a class name that is
    itself a number ("9 1") reads as two classes."""
    pairs = sorted(((int(c), name) for name, c in zip(classes, counts, strict=True) if c), key=lambda p: -p[0])
    return "; ".join(f"class {plain(name)}: {c:,} image{'' if c == 1 else 's'}" for c, name in pairs)
