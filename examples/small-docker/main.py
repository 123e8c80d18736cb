"""Write a few paragraphs of lorem ipsum to the outputs folder: secd pushes them back as a branch."""
import os
import random

WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
    "et dolore magna aliqua ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut "
    "aliquip ex ea commodo consequat duis aute irure dolor in reprehenderit in voluptate velit esse "
    "cillum dolore eu fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt in culpa "
    "qui officia deserunt mollit anim id est laborum"
).split()


def paragraph(rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(3, 6)):
        words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def main() -> None:
    out = os.environ.get("OUTPUT_PATH", "./outputs")
    os.makedirs(out, exist_ok=True)
    rng = random.Random(42)
    paragraphs = [paragraph(rng) for _ in range(5)]
    with open(os.path.join(out, "lorem.txt"), "w", encoding="utf-8") as f:
        f.write("\n\n".join(paragraphs) + "\n")
    print(f"wrote {len(paragraphs)} paragraphs to {out}/lorem.txt (SECD={os.environ.get('SECD', 'unset')})")


if __name__ == "__main__":
    main()
