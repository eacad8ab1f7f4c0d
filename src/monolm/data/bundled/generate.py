"""Generate the bundled offline datasets ``tiny_lm``, ``tiny_summarization``,
``tiny_paraphrase`` and ``tiny_squad_v2``.

All four are synthetic English text built from hand-written templates and slot fillers
(names, places, numbers, objects), so that a tiny model has real structure to learn while no
two documents are copies of each other. They let the framework train and evaluate offline on
CPU; nothing here is downloaded.

- ``tiny_lm/{train,validation}.jsonl``: one ``{"text": ...}`` object per line, like wikitext or
  the Pile. Each document is 80-300 words of prose in one of seven genres; paragraphs are
  separated by ``"\\n"``.
- ``tiny_summarization/{train,validation}.jsonl``: ``{"article", "highlights", "id"}`` objects
  like CNN/DailyMail 3.0.0. Each article is a 100-300 word news story; its highlights are 2-3
  sentences, joined by ``"\\n"``, that restate facts drawn for that story; ``id`` is the SHA-1
  of the article.
- ``tiny_paraphrase/{train,validation}.jsonl``: ``{"idx", "sentence1", "sentence2", "label"}``
  objects like GLUE MRPC (label 1: the sentences are paraphrases, about 68% of pairs). Both
  sentences state one claim in different words; a non-paraphrase changes one fact of it.
- ``tiny_squad_v2/{train,validation}.jsonl``: ``{"id", "title", "context", "question",
  "answers"}`` objects like SQuAD v2: a 40-90 word paragraph and one question, about half of
  them unanswerable (``answers`` empty); ``answer_start`` indexes each answer in the context.

Output is byte-identical on every run: every split has its own string-seeded
``random.Random`` (string seeds are hashed with SHA-512, independent of ``PYTHONHASHSEED``),
pools are tuples, and lines are written in generation order with ``"\\n"`` endings.

Regenerate the shipped files with ``python src/monolm/data/bundled/generate.py``.
"""

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

SEED = 1234
SPLIT_SIZES = {"train": 400, "validation": 60}
PROMPTED_SPLIT_SIZES = {"train": 400, "validation": 100}  # tiny_paraphrase, tiny_squad_v2
LM_WORDS = (80, 300)
ARTICLE_WORDS = (100, 300)

# The word tables below are packed several words to a line (`# fmt: skip`): the formatter would
# put one word per line and turn each short table into a column of 20-40 lines.
FEMALE_NAMES = (
    "Amara", "Beatrice", "Chloé", "Dalia", "Elena", "Fatima", "Grace", "Hana", "Ingrid",
    "Julia", "Keiko", "Lena", "Maya", "Nadia", "Olivia", "Priya", "Rosa", "Sofia", "Tara",
    "Una", "Vera", "Wen", "Yara", "Zoë",
)  # fmt: skip
MALE_NAMES = (
    "Aaron", "Bruno", "Caleb", "Daniel", "Emil", "Felix", "George", "Hugo", "Ivan", "José",
    "Jonas", "Kenji", "Luca", "Marcus", "Nikhil", "Omar", "Pablo", "Ravi", "Samuel", "Søren",
    "Tomas", "Victor", "Wei", "Yusuf",
)  # fmt: skip
SURNAMES = (
    "Abbott", "Baker", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hartley",
    "Ibrahim", "Jensen", "Kowalski", "Lindqvist", "Moreau", "Nakamura", "Okafor", "Patel",
    "Quinn", "Rossi", "Santos", "Thornton", "Urquhart", "Varga", "Whitaker", "Yamamoto",
    "Zielinski",
)  # fmt: skip
TOWNS = (
    "Ashford", "Bramwell", "Cedar Falls", "Dunmore", "Eastwick", "Fairhaven", "Glenrock",
    "Harbor View", "Ironbridge", "Juniper Bay", "Kingsley", "Larkfield", "Millbrook",
    "Northgate", "Oakridge", "Pinecrest", "Queensbury", "Riverton", "Stonehill", "Thornbury",
    "Upton", "Valemont", "Westfield", "Yarrow",
)  # fmt: skip
STREETS = (
    "Mill Road", "Church Street", "Station Avenue", "Park Lane", "High Street", "Elm Street",
    "Harbor Road", "Market Street", "Orchard Lane", "Bridge Street", "Willow Way",
    "King Street",
)  # fmt: skip
VENUES = ("the town hall", "the community center", "the public library", "the old school hall")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = (
    ("January", "winter"), ("February", "winter"), ("March", "spring"), ("April", "spring"),
    ("May", "spring"), ("June", "summer"), ("July", "summer"), ("August", "summer"),
    ("September", "autumn"), ("October", "autumn"), ("November", "autumn"),
    ("December", "winter"),
)  # fmt: skip
JOBS = (
    "baker", "teacher", "carpenter", "nurse", "gardener", "postal worker", "librarian",
    "painter", "mechanic", "musician", "ferry captain", "bus driver", "pharmacist",
)  # fmt: skip
NUMBER_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip


@dataclass(frozen=True)
class Person:
    """A named person with the pronouns that templates need."""

    first: str
    last: str
    subj: str
    obj: str
    poss: str
    noun: str

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"


def draw_person(rng: random.Random) -> Person:
    if rng.random() < 0.5:
        return Person(rng.choice(FEMALE_NAMES), rng.choice(SURNAMES), "she", "her", "her", "woman")
    return Person(rng.choice(MALE_NAMES), rng.choice(SURNAMES), "he", "him", "his", "man")


def draw_people(rng: random.Random, count: int) -> list[Person]:
    """Draw ``count`` people with distinct first and last names."""
    people: list[Person] = []
    while len(people) < count:
        person = draw_person(rng)
        if all(person.first != p.first and person.last != p.last for p in people):
            people.append(person)
    return people


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def with_article(phrase: str) -> str:
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def number_word(n: int) -> str:
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else str(n)


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def join_list(items: list[str]) -> str:
    if len(items) < 3:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def plural(n: int, noun: str) -> str:
    return f"{number_word(n)} {noun}" + ("" if n == 1 else "s")


def degrees(t: int) -> str:
    return ("minus " if t < 0 else "") + plural(abs(t), "degree")


def next_weekday(day: str, offset: int = 1) -> str:
    return WEEKDAYS[(WEEKDAYS.index(day) + offset) % len(WEEKDAYS)]


def word_count(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------------------
# tiny_lm: seven genres of prose, each returning a list of paragraphs.
# --------------------------------------------------------------------------------------------

STORY_SETTINGS = (
    ("in a quiet fishing village on the coast", "the harbor"),
    ("in a busy market town", "the market square"),
    ("on a farm at the edge of the forest", "the old barn"),
    ("on a narrow street in the old part of the city", "the corner bakery"),
    ("in a mountain village above the clouds", "the stone bridge"),
    ("on a small island with one ferry a day", "the ferry pier"),
    ("in a crowded apartment building near the station", "the rooftop garden"),
    ("in a sleepy town beside a wide river", "the boathouse"),
)
LOST_ITEMS = (
    ("a silver key", "key"),
    ("a blue notebook", "notebook"),
    ("an old brass compass", "compass"),
    ("a wooden flute", "flute"),
    ("a red umbrella", "umbrella"),
    ("a small leather wallet", "wallet"),
    ("a hand-drawn map", "map"),
    ("a pocket watch", "watch"),
    ("a knitted scarf", "scarf"),
)
ANIMALS = (
    ("a gray cat", "cat"),
    ("a curious dog", "dog"),
    ("a young goat", "goat"),
    ("a noisy crow", "crow"),
    ("a small fox", "fox"),
    ("a tired old donkey", "donkey"),
)
RELATIONS = ("neighbor", "old friend", "cousin", "colleague")
ACTIVITIES = (
    "feeding the pigeons",
    "painting a fence",
    "reading the newspaper",
    "sweeping the steps",
    "repairing a bicycle",
    "selling flowers",
)
FOUND_PLACES = (
    "under a bench near the bus stop",
    "in the pocket of an old winter coat",
    "behind a row of flower pots",
    "at the bottom of a shopping bag",
    "in the lost property box at the library",
)
TREATS = ("a slice of cake", "a pot of tea", "a cup of hot chocolate", "a big bowl of soup")
RELATIVES = (
    ("grandmother", "she"),
    ("grandfather", "he"),
    ("aunt", "she"),
    ("uncle", "he"),
    ("older sister", "she"),
)
ITEM_ORIGINS = (
    "bought it at a market in a faraway city",
    "won it in a village race many years before",
    "kept it in the same drawer for half a century",
    "received it as a gift on the day of a long journey",
)


def story(rng: random.Random) -> list[str]:
    hero, friend = draw_people(rng, 2)
    he = cap(hero.subj)
    setting, landmark = rng.choice(STORY_SETTINGS)
    item, item_noun = rng.choice(LOST_ITEMS)
    animal, animal_noun = rng.choice(ANIMALS)
    job = rng.choice(JOBS)
    relation = rng.choice(RELATIONS)
    found = rng.choice(FOUND_PLACES)
    treat = rng.choice(TREATS)
    day = rng.choice(WEEKDAYS)
    month, _ = rng.choice(MONTHS)
    intro = rng.choice(
        (
            f"{hero.full} lived {setting}, where {hero.subj} worked as {with_article(job)}. "
            f"Every morning {hero.subj} walked past {landmark} and greeted the same neighbors.",
            f"Once there was {with_article(job)} named {hero.first} who lived {setting}. "
            f"{he} liked quiet mornings, strong tea and long walks to {landmark}.",
            f"{cap(setting)}, everyone knew {hero.first}, the {job} with the loud laugh. "
            f"{he} had lived there for {plural(rng.randint(3, 20), 'year')} and rarely left.",
        )
    )
    weather = rng.choice(("cold", "warm", "windy", "bright", "gray", "misty"))
    intro += f" It was {with_article(weather)} morning in {month}."
    problem = rng.choice(
        (
            f"One {day}, {hero.first} noticed that {hero.poss} {item_noun} was missing. "
            f"{he} searched {hero.poss} pockets, {hero.poss} bag and every shelf in the house, "
            "but it was nowhere to be found.",
            f"On {day} morning, {hero.first} reached for {hero.poss} {item_noun} and found only "
            f"an empty drawer. {he} had owned it for {plural(rng.randint(2, 15), 'year')}, and "
            f"losing it made {hero.obj} feel strangely lost as well.",
            f"When {hero.first} came home from {landmark} on {day} evening, {hero.poss} "
            f"{item_noun} was gone. {he} was sure {hero.subj} had left it on the kitchen table.",
        )
    )
    search = rng.choice(
        (
            f"{he} asked {friend.first}, {with_article(relation)}, for help. Together they "
            f"walked to {landmark}, asked the shopkeepers and looked under every bench they "
            "could find.",
            f"{hero.first} retraced {hero.poss} steps from the day before. At {landmark} "
            f'{hero.subj} met {friend.full}, who was {rng.choice(ACTIVITIES)}. "Have you seen '
            f'{item}?" {hero.first} asked. {friend.first} shook {friend.poss} head but '
            "promised to keep an eye out.",
            f"For {plural(rng.randint(2, 6), 'day')} {hero.first} searched without luck. "
            f"{cap(hero.poss)} {relation} {friend.first} suggested putting up notices, so they "
            f"wrote {number_word(rng.randint(5, 12))} of them by hand and pinned them up "
            f"around {landmark}.",
        )
    )
    ending = rng.choice(
        (
            f"Late that afternoon, {animal} appeared at the door with something in its mouth. "
            f"It was the missing {item_noun}. {hero.first} laughed, gave the {animal_noun} a "
            "small treat, and decided that some mysteries did not need to be solved.",
            f"The next morning, {friend.first} knocked on the door holding the {item_noun}. "
            f"{cap(friend.subj)} had found it {found}. {hero.first} thanked {friend.obj} with "
            f"{treat}, and from then on kept the {item_noun} in a safe place.",
            f"In the end, the {item_noun} turned up {found}, exactly where nobody had thought "
            f"to look. {hero.first} and {friend.first} celebrated with {treat} at {landmark}.",
        )
    )
    paragraphs = [intro, problem, search, ending]
    if rng.random() < 0.5:
        relative, relative_subj = rng.choice(RELATIVES)
        paragraphs.insert(
            2,
            f"The {item_noun} mattered more than it seemed. It had once belonged to "
            f"{hero.poss} {relative}, who had {rng.choice(ITEM_ORIGINS)}. {cap(relative_subj)} "
            f"gave it to {hero.first} on {hero.poss} {ordinal(rng.randint(8, 30))} birthday "
            f"and made {hero.obj} promise to look after it.",
        )
    if rng.random() < 0.5:
        paragraphs.append(
            rng.choice(
                (
                    f"Years later, {hero.first} still told the story to anyone who would listen.",
                    f"{hero.first} never learned how it had got there, but {hero.subj} never "
                    "lost it again.",
                    f"That night {hero.subj} slept better than {hero.subj} had in weeks.",
                )
            )
        )
    return paragraphs


SEASON_TEMPERATURES = {"winter": (-6, 5), "spring": (5, 14), "summer": (14, 22), "autumn": (4, 13)}
SUN_HOURS = {"winter": (7, 4), "spring": (6, 7), "summer": (5, 8), "autumn": (6, 6)}
MORNING_SKIES = (
    "cloudy",
    "foggy in low-lying areas",
    "clear and bright",
    "gray and damp",
    "sunny but cool",
)
AFTERNOON_SKIES = (
    ("the clouds will break up and the sun will come out", 0, 20),
    ("scattered showers will move in from the west", 40, 70),
    ("a band of heavy rain will cross the region", 75, 95),
    ("it will stay dry with a few high clouds", 0, 15),
    ("thunderstorms may develop over the hills", 50, 80),
    ("light drizzle will come and go", 30, 60),
)
DIRECTIONS = ("north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest")
DAYS_AHEAD_SKIES = (
    "will be sunny",
    "will be cloudy",
    "will bring showers",
    "will be wet and windy",
    "will see bright spells",
)
OUTLOOKS = (
    "the weekend looks settled and mild",
    "more rain is expected on Saturday before it clears on Sunday",
    "temperatures will drop sharply by Sunday",
    "a warmer spell is on the way",
    "the unsettled weather will continue into next week",
)


def weather_report(rng: random.Random) -> list[str]:
    town = rng.choice(TOWNS)
    day = rng.choice(WEEKDAYS)
    month, season = rng.choice(MONTHS)
    date = f"{day}, {month} {rng.randint(1, 28)}"
    intro = rng.choice(
        (
            f"Good morning, {town}. Here is your weather for {date}.",
            f"This is the forecast for {town} and the surrounding area on {date}.",
            f"Here is what to expect in {town} on {date}.",
        )
    )
    lo, hi = SEASON_TEMPERATURES[season]
    morning = rng.randint(lo, hi)
    high = morning + rng.randint(3, 9)
    night = morning - rng.randint(1, 5)
    wind = rng.randint(5, 55)
    strength = "light" if wind < 15 else "moderate" if wind < 30 else "strong"
    afternoon, rain_lo, rain_hi = rng.choice(AFTERNOON_SKIES)
    rain = rng.randrange(rain_lo, rain_hi + 1, 5)
    sunrise_hour, sunset_hour = SUN_HOURS[season]
    sunrise = f"{sunrise_hour}:{rng.randrange(0, 60, 5):02d}"
    sunset = f"{sunset_hour}:{rng.randrange(0, 60, 5):02d}"
    morning_text = (
        f"The morning will start {rng.choice(MORNING_SKIES)}, with temperatures around "
        f"{degrees(morning)}. {cap(with_article(strength))} wind from the "
        f"{rng.choice(DIRECTIONS)} will blow at about {wind} kilometers per hour."
    )
    afternoon_text = (
        f"By the afternoon, {afternoon}, and the temperature should reach {degrees(high)}. "
        f"The chance of rain is {rain} percent."
    )
    if high <= 2 and rain >= 40:
        afternoon_text += " With temperatures this low, some of it may fall as snow."
    evening_text = (
        f"Tonight, temperatures will fall to {degrees(night)}. Sunrise tomorrow is at "
        f"{sunrise} a.m. and sunset is at {sunset} p.m. Looking further ahead, "
        f"{rng.choice(OUTLOOKS)}."
    )
    if rain >= 60:
        advice = "If you are heading out, take an umbrella and allow extra time on the roads."
    elif night < 0:
        advice = "Watch out for icy patches on paths and bridges early tomorrow."
    elif high >= 24:
        advice = "Drink plenty of water and find some shade in the middle of the day."
    elif wind >= 40:
        advice = "Secure garden furniture and take care on exposed roads."
    else:
        advice = "It should be a pleasant day for a walk or a bike ride."
    paragraphs = [intro, morning_text, afternoon_text, evening_text, advice]
    if rng.random() < 0.5:
        ahead = []
        for offset in range(1, rng.randint(3, 6)):
            high += rng.randint(-3, 3)
            ahead.append(
                f"{next_weekday(day, offset)} {rng.choice(DAYS_AHEAD_SKIES)}, with a high of "
                f"{degrees(high)}."
            )
        paragraphs.insert(4, "The days ahead: " + " ".join(ahead))
    return paragraphs


SOUP_MAINS = (
    ("carrot", "carrots"),
    ("pumpkin", "pumpkin"),
    ("tomato", "ripe tomatoes"),
    ("red lentil", "red lentils"),
    ("leek and potato", "leeks and potatoes"),
    ("mushroom", "mushrooms"),
    ("sweet potato", "sweet potatoes"),
    ("pea", "frozen peas"),
)
HERBS = ("thyme", "parsley", "basil", "rosemary", "coriander", "dill", "sage")
CAKE_FLAVORS = (
    ("lemon", "the zest and juice of two lemons", "the lemon zest and juice"),
    ("chocolate", "80 grams of cocoa powder", "the cocoa"),
    ("banana", "three ripe bananas, mashed", "the mashed bananas"),
    ("apple", "two apples, peeled and diced", "the diced apple"),
    ("orange and almond", "the zest of one orange and 100 grams of ground almonds", "the rest"),
    ("coffee", "two shots of strong coffee, cooled", "the coffee"),
    ("ginger", "two teaspoons of ground ginger", "the ginger"),
    ("carrot", "two large carrots, grated", "the grated carrot"),
)
PASTA_SAUCES = (
    ("spinach and ricotta", "grams of spinach", "150 grams of ricotta"),
    ("mushroom and garlic", "grams of mushrooms", "a splash of cream"),
    ("tomato and olive", "grams of cherry tomatoes", "a handful of black olives"),
    ("pea and mint", "grams of peas", "a few leaves of fresh mint"),
    ("roasted pepper", "grams of roasted red peppers", "a pinch of chili flakes"),
    ("lemon and courgette", "grams of courgettes", "the zest of one lemon"),
)
PASTA_SHAPES = ("spaghetti", "penne", "fusilli", "linguine", "rigatoni")
RECIPE_QUALITIES = (
    "simple and filling",
    "quick and cheerful",
    "bright and fresh",
    "warm and comforting",
    "easy to scale up for a crowd",
)
OCCASIONS = ("a birthday party", "a long family lunch", "a school fair", "a rainy weekend")
STEP_WORDS = ("First, ", "Next, ", "Then ", "After that, ")
READER_NOTES = (
    "doubled the quantities for a party of twenty",
    "added a pinch of chili for extra warmth",
    "made it with {poss} grandchildren, who loved every step",
    "used a smaller pan and found that it worked just as well",
    "now makes it every {day} without fail",
)


def soup_recipe(rng: random.Random, servings: int) -> tuple[str, list[str], list[str], int]:
    main, ingredient = rng.choice(SOUP_MAINS)
    herb = rng.choice(HERBS)
    onions = max(1, servings // 2)
    soften, stir, simmer = rng.randint(5, 10), rng.randint(2, 5), rng.randint(15, 35)
    ingredients = [
        f"{150 * servings} grams of {ingredient}",
        plural(onions, "onion"),
        f"{number_word(rng.randint(2, 4))} cloves of garlic",
        f"{250 * servings} milliliters of vegetable stock",
        "two tablespoons of olive oil",
        f"a handful of fresh {herb}",
    ]
    steps = [
        f"Peel and chop the {'onion' if onions == 1 else 'onions'} and garlic, then soften "
        f"them in the oil over a low heat for {soften} minutes.",
        f"Add the {ingredient} and stir for another {plural(stir, 'minute')}.",
        f"Pour in the stock, bring it to the boil and let it simmer for {simmer} minutes.",
        f"Blend the soup until smooth, stir in the {herb} and season with salt and pepper.",
    ]
    return f"{main} soup with {herb}", ingredients, steps, soften + stir + simmer + 10


def cake_recipe(rng: random.Random, servings: int) -> tuple[str, list[str], list[str], int]:
    flavor, extra, extra_short = rng.choice(CAKE_FLAVORS)
    butter = rng.randrange(150, 251, 25)
    oven, bake = rng.randrange(160, 191, 10), rng.randrange(30, 51, 5)
    ingredients = [
        f"{butter} grams of soft butter",
        f"{butter} grams of sugar",
        plural(rng.randint(2, 4), "egg"),
        f"{butter + 25} grams of self-raising flour",
        extra,
    ]
    steps = [
        f"Heat the oven to {oven} degrees and line a round tin with baking paper.",
        "Beat the butter and sugar together until pale and fluffy, then add the eggs one at a "
        "time.",
        f"Fold in the flour, a pinch of salt and {extra_short}.",
        f"Bake for {bake} minutes, until a skewer pushed into the middle comes out clean.",
        "Let the cake cool in the tin for ten minutes before turning it out.",
    ]
    return f"{flavor} cake", ingredients, steps, bake + 25


def pasta_recipe(rng: random.Random, servings: int) -> tuple[str, list[str], list[str], int]:
    sauce, vegetable, finish = rng.choice(PASTA_SAUCES)
    shape = rng.choice(PASTA_SHAPES)
    boil = rng.randint(8, 12)
    ingredients = [
        f"{100 * servings} grams of {shape}",
        f"{80 * servings} {vegetable}",
        f"{plural(rng.randint(1, 3), 'clove')} of garlic",
        "three tablespoons of olive oil",
        finish,
    ]
    steps = [
        f"Bring a large pot of salted water to the boil and cook the {shape} for {boil} minutes.",
        "Warm the oil in a wide pan while the pasta cooks, and fry the sliced garlic for one "
        "minute.",
        f"Add the vegetables, cook them gently until soft and stir in {finish}.",
        f"Drain the {shape}, keeping a cup of the cooking water, and toss it with the sauce.",
    ]
    return f"{shape} with {sauce} sauce", ingredients, steps, boil + 15


def recipe(rng: random.Random) -> list[str]:
    make = rng.choice((soup_recipe, cake_recipe, pasta_recipe))
    servings = rng.randint(2, 8)
    title, ingredients, steps, minutes = make(rng, servings)
    if make is cake_recipe:
        size = f"makes {number_word(rng.randint(8, 12))} slices"
    else:
        size = f"serves {number_word(servings)}"
    cook = draw_person(rng)
    quality = rng.choice(RECIPE_QUALITIES)
    intro = rng.choice(
        (
            f"This {title} is {quality} and takes about {minutes} minutes from start to "
            f"finish. It {size}.",
            f"{cook.full} from {rng.choice(TOWNS)} shared this recipe for {title} with us. "
            f"{cap(cook.subj)} first made it for {rng.choice(OCCASIONS)}, and it has been a "
            f"family favorite ever since. It {size}.",
            f"If you need something {quality} for a {rng.choice(WEEKDAYS)} evening, try this "
            f"{title}. It {size} and needs about {minutes} minutes.",
        )
    )
    words = (*STEP_WORDS[: len(steps) - 1], "Finally, ")
    method = " ".join(
        f"{word}{step[0].lower()}{step[1:]}" for word, step in zip(words, steps, strict=True)
    )
    tip = rng.choice(
        (
            "You can make it a day ahead; the flavors only improve overnight.",
            "It goes well with a green salad and some crusty bread.",
            "Children love helping with the measuring and stirring.",
        )
    )
    paragraphs = [
        intro,
        f"You will need {join_list(ingredients)}.",
        method,
        f"{tip} Leftovers keep in the fridge for up to {plural(rng.randint(2, 4), 'day')}.",
    ]
    if rng.random() < 0.5:
        reader = draw_person(rng)
        note = rng.choice(READER_NOTES).format(poss=reader.poss, day=rng.choice(WEEKDAYS))
        paragraphs.append(
            f"{reader.full} from {rng.choice(TOWNS)} tried this recipe last month and wrote to "
            f"tell us that {reader.subj} {note}. Send us your own versions and we will share "
            "the best of them."
        )
    return paragraphs


COUNCIL_PROJECTS = (
    (
        "a new public library on {street}",
        "the loss of parking spaces",
        "give children a quiet place to study",
    ),
    (
        "a protected bike lane along {street}",
        "slower traffic at rush hour",
        "make cycling safer for commuters",
    ),
    (
        "a playground in the park behind the town hall",
        "noise in the evenings",
        "give young families somewhere to meet",
    ),
    (
        "the repair of the old footbridge over the river",
        "the long closure during the works",
        "reconnect the two halves of the town",
    ),
    (
        "a community garden on the empty lot on {street}",
        "who would pay for the water",
        "bring neighbors together and grow fresh food",
    ),
    (
        "longer opening hours at the public swimming pool",
        "the extra cost to taxpayers",
        "let shift workers swim after work",
    ),
    (
        "a weekly farmers market on {street}",
        "the effect on existing shops",
        "support small farms in the area",
    ),
    (
        "solar panels on the roof of the primary school",
        "the appearance of the old building",
        "cut the school's energy bills",
    ),
)
COUNCIL_QUOTES = (
    "This is a small change that will make a big difference",
    "People have been asking for this for years",
    "We listened to residents, and this is the result",
    "It is the right project at the right time for our town",
)
RESIDENT_QUOTES = (
    "I am not against it, but I want to see the details",
    "Nobody asked the people who actually live here",
    "I hope they have thought this through",
)


def local_news(rng: random.Random) -> list[str]:
    town = rng.choice(TOWNS)
    street, home_street = rng.sample(STREETS, 2)
    councillor, resident = draw_people(rng, 2)
    project, concern, benefit = rng.choice(COUNCIL_PROJECTS)
    project = project.format(street=street)
    seats = rng.randrange(7, 16, 2)
    votes_for = rng.randint(seats // 2 + 1, seats)
    day, meeting_day = rng.sample(WEEKDAYS[:5], 2)
    (month, _), (survey_month, _) = rng.sample(MONTHS, 2)
    council = rng.choice((f"The {town} town council", f"Councillors in {town}"))
    paragraphs = [
        f"{council} voted {votes_for} to {seats - votes_for} on {day} evening to approve "
        f"{project}.",
        f"The plan will cost about {rng.randrange(20_000, 2_000_001, 5_000):,} dollars and "
        f"is expected to {benefit}. Work should begin in {month} and take around "
        f"{rng.randint(3, 30)} weeks to complete.",
        f'"{rng.choice(COUNCIL_QUOTES)}," said councillor {councillor.full}, who proposed the '
        "plan.",
        f"Not everyone is convinced. {resident.full}, who has lived on {home_street} for "
        f"{plural(rng.randint(2, 40), 'year')}, said {resident.subj} was worried about "
        f'{concern}. "{rng.choice(RESIDENT_QUOTES)}," {resident.subj} said.',
        f"A public meeting about the plan will be held at {rng.choice(VENUES)} on "
        f"{meeting_day} at {rng.randint(5, 8)} p.m.",
    ]
    if rng.random() < 0.6:
        paragraphs.insert(
            2,
            f"The decision follows {plural(rng.randint(2, 18), 'month')} of consultation, "
            f"during which the council received {rng.randint(40, 900)} written comments. A "
            f"survey carried out in {survey_month} found that {rng.randint(35, 85)} percent of "
            "residents supported the idea.",
        )
    return paragraphs


DESTINATIONS = (
    ("Portugal", "Lisbon", "grilled sardines", "yellow trams climbing the hills"),
    ("Japan", "Kyoto", "bowls of hot noodles", "wooden temples in the rain"),
    ("Norway", "Bergen", "creamy fish soup", "colorful houses along the harbor"),
    ("Morocco", "Fez", "a slow-cooked tagine", "narrow lanes of the old medina"),
    ("Peru", "Cusco", "corn soup and roasted potatoes", "stone walls built centuries ago"),
    ("Greece", "Naxos", "fresh feta and olives", "white houses above the sea"),
    ("Vietnam", "Hoi An", "rice noodles with herbs", "lanterns along the river"),
    ("Scotland", "Edinburgh", "warm oatcakes", "castle on the hill"),
    ("Chile", "Valparaíso", "baked empanadas", "steep streets and old funiculars"),
    ("Italy", "Bologna", "fresh pasta", "long covered arcades"),
    ("Kenya", "Nairobi", "grilled corn", "giraffes at the edge of the city"),
)
TRANSPORTS = ("a crowded train", "an overnight bus", "a small ferry", "a slow regional train")
ARRIVALS = ("late in the evening", "just before noon", "in a rainstorm", "as the sun was setting")
TRAVEL_WEATHER = (
    "warm and sunny",
    "cool with a steady breeze",
    "wet and gray",
    "hot and humid",
    "crisp and clear",
)
TRAVEL_SPOTS = ("the main square", "the station", "the harbor", "our guesthouse")
TRAVEL_PLANS = (
    "take a day trip into the hills",
    "catch an early train further along the coast",
    "visit the market before it gets busy",
    "rent bicycles and explore the countryside",
    "rest, read and finally do some laundry",
)
TRAVEL_EVENINGS = (
    "went back to {host}'s place for dinner, as promised",
    "watched the sunset from the old city walls",
    "found a tiny bar with live music",
    "wrote postcards at a café near the station",
)
TRAVEL_CLOSINGS = (
    "It was a perfect end to a long day.",
    "We were asleep before ten.",
    "We talked for hours about how strange it will feel to go home.",
)


def travel_notes(rng: random.Random) -> list[str]:
    country, city, food, sight = rng.choice(DESTINATIONS)
    host = draw_person(rng)
    arrival = (
        f"Day {rng.randint(2, 21)} in {country}. We arrived in {city} {rng.choice(ARRIVALS)} "
        f"after {plural(rng.randint(2, 14), 'hour')} on {rng.choice(TRANSPORTS)}. "
        f"Our room is small but clean, and the window looks out over "
        f"{rng.choice(('a quiet courtyard', 'a busy street', 'a row of rooftops'))}."
    )
    sightseeing = f"The first thing we did was walk to see the {sight}. " + rng.choice(
        (
            "It was even more beautiful than the photos.",
            "It was crowded, but worth every minute.",
            "We sat for an hour just watching people pass by.",
        )
    )
    lunch = (
        f"For lunch we tried {food} at a small place near {rng.choice(TRAVEL_SPOTS)}, run by "
        f"{with_article(rng.choice(('old', 'young', 'cheerful')))} {host.noun} named "
        f"{host.first}. {cap(host.subj)} told us that {host.poss} family had run the place for "
        f"{plural(rng.randint(5, 60), 'year')} and insisted that we come back for dinner."
    )
    weather = (
        f"The weather was {rng.choice(TRAVEL_WEATHER)}, and by evening we had walked "
        f"{rng.randint(6, 24)} kilometers and taken {rng.randint(20, 150)} photos."
    )
    paragraphs = [arrival, sightseeing, lunch, weather]
    if rng.random() < 0.6:
        evening = rng.choice(TRAVEL_EVENINGS).format(host=host.first)
        paragraphs.append(f"In the evening we {evening}. {rng.choice(TRAVEL_CLOSINGS)}")
    paragraphs.append(f"Tomorrow we plan to {rng.choice(TRAVEL_PLANS)}.")
    return paragraphs


SCIENCE_TOPICS = (
    (
        "rainbows",
        "why rainbows appear after rain",
        (
            "A rainbow forms when sunlight passes through tiny drops of water in the air.",
            "As the light enters each drop, it slows down and bends, a process called refraction.",
            "Different colors of light bend by slightly different amounts, so white sunlight "
            "spreads out into a band of colors.",
            "The light reflects off the back of the drop and bends again as it leaves.",
            "To see a rainbow, you need to stand with the sun behind you and the rain in front "
            "of you.",
        ),
        "On a sunny day, spray a fine mist of water from a garden hose with your back to the "
        "sun and look for the colors.",
    ),
    (
        "the water cycle",
        "where rain comes from",
        (
            "The sun warms water in oceans, lakes and rivers, and some of it turns into an "
            "invisible gas called water vapor.",
            "As the vapor rises, it cools and condenses into tiny droplets that form clouds.",
            "When the droplets join together and grow heavy enough, they fall as rain, snow or "
            "hail.",
            "Some of the water soaks into the ground, and some flows back into rivers and the sea.",
            "The same water has been moving through this cycle for billions of years.",
        ),
        "Put a bowl of water in a sunny spot, cover it with plastic wrap, and watch droplets "
        "form on the underside of the wrap.",
    ),
    (
        "the seasons",
        "why we have seasons",
        (
            "Earth's axis is tilted by about 23.5 degrees compared with its path around the sun.",
            "For part of the year, the northern half of the planet leans toward the sun and "
            "receives more direct sunlight, which brings summer.",
            "Six months later, the northern half leans away, the days grow shorter, and winter "
            "arrives.",
            "This is why the seasons in the southern half of the world are the opposite of "
            "those in the north.",
            "The changing distance between Earth and the sun has only a small effect on the "
            "seasons.",
        ),
        "Shine a flashlight straight down onto a sheet of paper and then at an angle, and "
        "notice how the light spreads over a larger area when it is tilted.",
    ),
    (
        "the phases of the moon",
        "why the moon seems to change shape",
        (
            "The moon does not make its own light; it reflects light from the sun.",
            "Half of the moon is always lit by the sun, but we see different amounts of that "
            "lit half as the moon travels around Earth.",
            "It takes about 29.5 days to go from one new moon to the next.",
            "When the moon is between Earth and the sun, the lit side faces away from us and we "
            "see a new moon.",
            "When Earth is between the sun and the moon, we see the whole lit side as a full moon.",
        ),
        "In a dark room, hold a ball at arm's length near a lamp and turn slowly in a circle "
        "to see the phases appear on the ball.",
    ),
    (
        "photosynthesis",
        "how plants make their own food",
        (
            "Plants make their own food through a process called photosynthesis.",
            "Their leaves take in carbon dioxide from the air, and their roots draw up water "
            "from the soil.",
            "Using energy from sunlight, the plant turns these ingredients into sugar, which it "
            "uses to grow.",
            "Oxygen is released as a by-product, which is why plants matter so much for the "
            "air we breathe.",
            "The green color of leaves comes from chlorophyll, the substance that captures light.",
        ),
        "Place one pot plant in a sunny window and another in a dark cupboard for a week, and "
        "compare how they look.",
    ),
    (
        "volcanoes",
        "why volcanoes erupt",
        (
            "Deep below the surface, rock can become so hot that it melts into magma.",
            "Magma is lighter than the solid rock around it, so it slowly rises toward the "
            "surface.",
            "When pressure from gas and magma builds up, it can break through the crust in an "
            "eruption.",
            "Once magma reaches the surface, it is called lava.",
            "Many volcanoes sit along the edges of tectonic plates, the huge slabs of rock that "
            "make up Earth's outer shell.",
        ),
        "A classic kitchen demonstration uses baking soda and vinegar to show how gas pressure "
        "can push liquid up and out of a container.",
    ),
    (
        "sound",
        "how sound travels",
        (
            "Sound is made when something vibrates, such as a guitar string or the skin of a drum.",
            "The vibrations push and pull on the air, creating waves that travel outward.",
            "In air, sound travels at about 340 meters per second.",
            "Sound moves faster through water and even faster through solids like steel.",
            "Sound cannot travel through empty space, because there is nothing there to carry "
            "the vibrations.",
        ),
        "Stretch a rubber band between your fingers and pluck it, then stretch it tighter and "
        "notice how the pitch rises.",
    ),
    (
        "magnets",
        "how magnets work",
        (
            "Every magnet has two ends, called the north pole and the south pole.",
            "Opposite poles attract each other, while matching poles push each other away.",
            "Magnets attract some metals, such as iron and nickel, but not others, such as "
            "copper or aluminum.",
            "Earth itself behaves like a giant magnet, which is why a compass needle points north.",
            "The area around a magnet where its pull can be felt is called a magnetic field.",
        ),
        "Sprinkle iron filings on a sheet of paper held over a magnet, and the filings will "
        "line up to show the shape of the magnetic field.",
    ),
    (
        "bees and pollination",
        "why bees matter so much to farmers",
        (
            "As bees move from flower to flower collecting nectar, grains of pollen stick to "
            "their hairy bodies.",
            "When some of that pollen rubs off on the next flower, it helps the plant make "
            "seeds and fruit.",
            "This process is called pollination.",
            "Many crops, including apples, almonds and strawberries, depend on insects for "
            "pollination.",
            "A single honeybee colony can contain tens of thousands of bees.",
        ),
        "Watch a patch of flowers for ten minutes on a warm day and count how many different "
        "insects visit them.",
    ),
    (
        "the tides",
        "what causes the tides",
        (
            "Tides are caused mainly by the pull of the moon's gravity on Earth's oceans.",
            "The water bulges out on the side of Earth facing the moon and also on the "
            "opposite side.",
            "As Earth spins, most coasts pass through two high tides and two low tides roughly "
            "every day.",
            "The sun also pulls on the oceans, and when the sun and moon line up, tides are "
            "especially high and low.",
            "These extra-strong tides are called spring tides, although they have nothing to "
            "do with the season.",
        ),
        "If you live near the coast, mark the water line on a post or rock every few hours "
        "and watch how it moves.",
    ),
    (
        "lightning",
        "what causes lightning and thunder",
        (
            "Inside a storm cloud, tiny pieces of ice and water bump into each other and build "
            "up electric charge.",
            "The bottom of the cloud usually becomes negatively charged, while the top becomes "
            "positively charged.",
            "When the difference grows large enough, electricity jumps through the air as a "
            "bolt of lightning.",
            "Lightning heats the air around it to temperatures hotter than the surface of the sun.",
            "That sudden heating makes the air expand explosively, which we hear as thunder.",
        ),
        "Count the seconds between a flash and the thunder that follows; every three seconds "
        "means the storm is roughly one kilometer away.",
    ),
    (
        "floating and sinking",
        "why some things float and others sink",
        (
            "Whether an object floats depends on its density, which is how much mass is packed "
            "into its volume.",
            "Objects that are less dense than water float, while denser objects sink.",
            "A steel ship floats because its hollow shape holds a lot of air, which lowers its "
            "overall density.",
            "Water pushes up on anything placed in it with a force called buoyancy.",
            "Salt water is denser than fresh water, so it is easier to float in the sea than "
            "in a lake.",
        ),
        "Drop an egg into a glass of fresh water and watch it sink, then stir in several "
        "spoonfuls of salt and watch it rise.",
    ),
)


def science_explainer(rng: random.Random) -> list[str]:
    topic, question, facts, experiment = rng.choice(SCIENCE_TOPICS)
    reader = draw_person(rng)
    intro = rng.choice(
        (
            f"Have you ever wondered {question}? The answer is simpler than it seems.",
            f"{reader.first}, aged {rng.randint(7, 14)}, from {rng.choice(TOWNS)} wrote to "
            f"ask us {question}. It is a great question, so let us take a look.",
            f"This week's science corner is about {topic}, and in particular {question}.",
        )
    )
    kept = sorted(rng.sample(range(len(facts)), rng.randint(4, len(facts))))
    half = len(kept) // 2
    first = " ".join(facts[i] for i in kept[:half])
    second = " ".join(facts[i] for i in kept[half:])
    try_it = rng.choice(
        ("Try it yourself.", "Here is a simple experiment.", "You can see this at home.")
    )
    outro = rng.choice(
        (
            "Next week we will answer another question from our readers.",
            "Science is everywhere once you start looking for it.",
            "Send us your questions, and we may answer yours next.",
        )
    )
    paragraphs = [intro, first, second, f"{try_it} {experiment}", outro]
    if rng.random() < 0.5:
        paragraphs.insert(
            4,
            "Remember to ask an adult for help before you start, and to tidy up when you have "
            "finished.",
        )
    return paragraphs


MASCOTS = ("Rovers", "Wanderers", "Falcons", "Wolves", "Rangers", "Harriers", "Lions", "Otters")
LEAGUES = ("Northern League", "County Premier Division", "Regional First Division")
HALVES = ("cagey", "lively", "scrappy", "open", "tense")
GROUNDS = ("Riverside Park", "Meadow Lane", "Victoria Ground", "Castle Park", "Harbor Stadium")
COACH_QUOTES = {
    "won": (
        "The players worked incredibly hard today",
        "We showed real character in the second half",
        "That is the kind of performance our supporters deserve",
    ),
    "lost": (
        "We were not good enough today, and we know it",
        "We made too many mistakes at the back",
        "We have to pick ourselves up quickly",
    ),
    "drew": (
        "A point is probably a fair result",
        "We will take the positives from today",
        "Both teams had chances to win it",
    ),
}


def sports_report(rng: random.Random) -> list[str]:
    home_town, away_town, next_town = rng.sample(TOWNS, 3)
    home_mascot, away_mascot = rng.sample(MASCOTS, 2)
    teams = (f"{home_town} {home_mascot}", f"{away_town} {away_mascot}")
    home_goals, away_goals = rng.randint(0, 4), rng.randint(0, 3)
    players = draw_people(rng, 5)
    squads = (players[:2], players[2:4])
    coach = players[4]
    minutes = sorted(rng.sample(range(2, 90), home_goals + away_goals))
    scorers = [0] * home_goals + [1] * away_goals
    rng.shuffle(scorers)
    day = rng.choice(WEEKDAYS[4:])
    ground = rng.choice(GROUNDS)
    crowd = rng.randrange(300, 12_001, 50)
    if home_goals == away_goals:
        lead = f"{teams[0]} and {teams[1]} drew {home_goals}-{away_goals} at {ground} on {day}"
    else:
        winner = 0 if home_goals > away_goals else 1
        high, low = max(home_goals, away_goals), min(home_goals, away_goals)
        lead = f"{teams[winner]} beat {teams[1 - winner]} {high}-{low} at {ground} on {day}"
    lead += f", in front of a crowd of {crowd:,}."
    score = [0, 0]
    goals: list[str] = []
    scored: set[Person] = set()
    for minute, side in zip(minutes, scorers, strict=True):
        score[side] += 1
        scorer = rng.choice(squads[side])
        name = scorer.last if scorer in scored else scorer.full
        scored.add(scorer)
        mascot = (home_mascot, away_mascot)[side]
        if not goals:
            goals.append(
                f"{name} opened the scoring for the {mascot} in the {ordinal(minute)} minute."
            )
        else:
            goals.append(f"{name} made it {score[0]}-{score[1]} in the {ordinal(minute)} minute.")
    if not goals:
        keeper = rng.choice(squads[rng.randint(0, 1)])
        goals.append(
            f"Neither side found the net, although {keeper.full} made "
            f"{plural(rng.randint(3, 9), 'save')} in goal."
        )
    side = rng.randint(0, 1)
    diff = (home_goals - away_goals) * (1 if side == 0 else -1)
    result = "won" if diff > 0 else "lost" if diff < 0 else "drew"
    coach_role = ("home", "visiting")[side]
    quote = f'"{rng.choice(COACH_QUOTES[result])}," said {coach_role} coach {coach.full}.'
    games = rng.randint(5, 30)
    table = (
        f"The result leaves the {(home_mascot, away_mascot)[side]} {ordinal(rng.randint(1, 14))} "
        f"in the {rng.choice(LEAGUES)} with {rng.randint(games // 2, games * 2)} points from "
        f"{games} games. They face {next_town} next {rng.choice(WEEKDAYS[4:])}."
    )
    paragraphs = [lead, " ".join(goals), quote, table]
    if rng.random() < 0.6:
        first_half, second_half = rng.sample(HALVES, 2)
        cards = rng.randint(0, 6)
        booking = (
            "did not need to show a single card"
            if cards == 0
            else f"showed {plural(cards, 'yellow card')}"
        )
        paragraphs.insert(
            2,
            f"The first half was {first_half} and the second was {second_half}. "
            f"{rng.choice(players[:4]).full} was named player of the match, and the referee "
            f"{booking}.",
        )
    return paragraphs


LM_GENRES: tuple[Callable[[random.Random], list[str]], ...] = (
    story,
    weather_report,
    recipe,
    local_news,
    travel_notes,
    science_explainer,
    sports_report,
)


def lm_document(rng: random.Random) -> dict[str, str]:
    """Draw one ``tiny_lm`` document whose length is within ``LM_WORDS``."""
    while True:
        text = "\n".join(rng.choice(LM_GENRES)(rng))
        if LM_WORDS[0] <= word_count(text) <= LM_WORDS[1]:
            return {"text": text}


# --------------------------------------------------------------------------------------------
# tiny_summarization: ten kinds of news event. Each draws its facts once and states them twice:
# in full in the article and compressed in the highlights.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewsEvent:
    """The sentences of one news story, before they are arranged into an article."""

    town: str
    lead: str
    lead_highlight: str
    facts: tuple[tuple[str, str], ...]
    quote: str
    extras: tuple[str, ...]


def fire_event(rng: random.Random) -> NewsEvent:
    town, street, day = rng.choice(TOWNS), rng.choice(STREETS), rng.choice(WEEKDAYS)
    building = rng.choice(
        (
            "a furniture warehouse",
            "a disused textile mill",
            "a row of shops",
            "a block of flats",
            "a timber yard",
            "a hardware store",
        )
    )
    origin = rng.choice(
        (
            "a storage room at the back of the building",
            "an electrical cupboard",
            "a kitchen on the ground floor",
            "a delivery van parked outside",
            "the roof space",
        )
    )
    firefighters, hours = rng.randint(20, 90), rng.randint(2, 9)
    injured = cap(number_word(rng.randint(2, 6)))
    chief = draw_person(rng)
    quote = rng.choice(
        (
            "Our crews did an outstanding job in very difficult conditions",
            "It could have been much worse, and we are grateful nobody was badly hurt",
            "We would remind everyone to check their smoke alarms",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"A fire tore through {building} on {street} in {town} on {day}, forcing "
        f"{rng.randint(12, 240)} people to leave nearby homes.",
        lead_highlight=f"Fire tore through {building} on {street} in {town} on {day}.",
        facts=(
            (
                f"A total of {firefighters} firefighters worked for {plural(hours, 'hour')} to "
                f"bring the blaze under control, the {town} Fire Service said.",
                f"{firefighters} firefighters worked for {plural(hours, 'hour')} to bring the "
                "blaze under control.",
            ),
            (
                f"{injured} people were treated for smoke inhalation at {town} General Hospital, "
                "but none were seriously hurt.",
                f"{injured} people were treated for smoke inhalation.",
            ),
            (
                f"Investigators believe the fire started in {origin}, although the exact cause "
                "has not been confirmed.",
                f"Investigators believe the fire started in {origin}.",
            ),
        ),
        quote=f'"{quote}," said fire chief {chief.full}.',
        extras=(
            f"Residents were allowed to return to their homes late on {day} evening.",
            f"{street} remained closed to traffic while crews made the site safe.",
            "Thick black smoke could be seen from several kilometers away.",
        ),
    )


COMPANIES = (
    ("Foods", "frozen meals"),
    ("Engineering", "machine parts"),
    ("Textiles", "outdoor clothing"),
    ("Energy", "solar panels"),
    ("Robotics", "warehouse robots"),
    ("Packaging", "recycled cardboard boxes"),
    ("Bicycles", "electric bicycles"),
)


def factory_event(rng: random.Random) -> NewsEvent:
    town, street, day = rng.choice(TOWNS), rng.choice(STREETS), rng.choice(WEEKDAYS[:5])
    month, _ = rng.choice(MONTHS)
    kind, product = rng.choice(COMPANIES)
    ceo, mayor = draw_people(rng, 2)
    company = f"{ceo.last} {kind}"
    jobs = rng.randrange(50, 801, 10)
    investment = rng.randint(5, 120)
    former = rng.choice(("a bus depot", "a paper mill", "a car park", "a railway yard"))
    reason = rng.choice(
        ("good rail links", "skilled workforce", "low energy costs", "large empty sites")
    )
    quote = rng.choice(
        (
            "This is fantastic news for families in our town",
            "These jobs will make a real difference to young people here",
            "We have worked hard for two years to bring this investment here",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"{company}, a maker of {product}, said on {day} that it will open a new factory "
        f"in {town} in {month}.",
        lead_highlight=f"{company} will open a new factory in {town} in {month}.",
        facts=(
            (
                f"The factory is expected to create {jobs} jobs, most of them in production and "
                "logistics.",
                f"The factory is expected to create {jobs} jobs.",
            ),
            (
                f"The company is investing {investment} million dollars in the site on {street}, "
                f"which was once used as {former}.",
                f"The company is investing {investment} million dollars in the site.",
            ),
            (
                f"Chief executive {ceo.full} said {town} was chosen because of its {reason}.",
                f"The company chose {town} because of its {reason}.",
            ),
        ),
        quote=f'"{quote}," said {town} mayor {mayor.full}.',
        extras=(
            "Recruitment for the first positions will begin in the spring.",
            "Local colleges are expected to offer training courses linked to the new jobs.",
            f"The company already employs about {rng.randrange(200, 5001, 50):,} people at "
            "two other sites.",
        ),
    )


def match_event(rng: random.Random) -> NewsEvent:
    town, rival_town = rng.sample(TOWNS, 2)
    mascot, rival_mascot = rng.sample(MASCOTS, 2)
    team, rival = f"{town} {mascot}", f"{rival_town} {rival_mascot}"
    won = rng.randint(1, 5)
    lost = rng.randint(0, won - 1)
    day = rng.choice(WEEKDAYS[4:])
    ground, league = rng.choice(GROUNDS), rng.choice(LEAGUES)
    scorer, coach, rival_coach = draw_people(rng, 3)
    goals = rng.randint(1, won)
    times = {1: "once", 2: "twice"}.get(goals, f"{number_word(goals)} times")
    how = rng.choice(("header", "penalty", "long-range shot", "free kick", "close-range finish"))
    minute = ordinal(rng.randint(2, 89))
    position = ordinal(rng.randint(1, 8))
    crowd = rng.randrange(800, 25_001, 50)
    manner = (
        "in a one-sided contest"
        if won - lost >= 3
        else "in a tense, closely fought match"
        if won - lost == 1
        else "in an entertaining game"
    )
    quote = rng.choice(COACH_QUOTES["won"])
    return NewsEvent(
        town=town,
        lead=f"{team} beat {rival} {won}-{lost} at {ground} on {day} {manner}.",
        lead_highlight=f"{team} beat {rival} {won}-{lost} on {day}.",
        facts=(
            (
                f"{scorer.full} scored {times} for the {mascot}, "
                f"{'with' if goals == 1 else 'including'} a {how} in the {minute} minute.",
                f"{scorer.full} scored {times} for the {mascot}.",
            ),
            (
                f"The match was watched by a crowd of {crowd:,}, the biggest at {ground} this "
                "season.",
                f"A crowd of {crowd:,} watched the match.",
            ),
            (
                f"The win lifts {team} to {position} place in the {league}, "
                f"{plural(rng.randint(1, 12), 'point')} behind the leaders.",
                f"{team} are now {position} in the {league}.",
            ),
        ),
        quote=f'"{quote}," said {team} coach {coach.full}.',
        extras=(
            f"{rival} had won their previous {number_word(rng.randint(2, 6))} matches.",
            "Both sides had chances in a lively opening half hour.",
            f"{rival} coach {rival_coach.full} said {rival_coach.subj} expected a reaction "
            "from the players next week.",
        ),
    )


FINDINGS = (
    ("walk for at least half an hour a day", "sleep better", "report a good night's sleep"),
    ("eat breakfast every morning", "concentrate better at work", "do well on memory tests"),
    ("spend time in parks and gardens", "feel less stressed", "describe themselves as calm"),
    ("read for pleasure before bed", "fall asleep faster", "fall asleep within 20 minutes"),
    ("play a musical instrument", "keep sharper memories", "pass memory tests in old age"),
    ("cycle to work", "take fewer sick days", "go a whole year without a sick day"),
    ("volunteer in their community", "are more satisfied with life", "say they are happy"),
    ("keep a regular bedtime", "have more energy during the day", "rate their energy as high"),
)
JOURNALS = ("Open Health Letters", "the Journal of Daily Life Studies", "Community Health Review")


def study_event(rng: random.Random) -> NewsEvent:
    town, day = rng.choice(TOWNS), rng.choice(WEEKDAYS[:5])
    behavior, outcome, likely = rng.choice(FINDINGS)
    researcher = draw_person(rng)
    youngest = rng.randint(18, 40)
    participants = rng.randrange(300, 20_001, 50)
    months = rng.randint(6, 48)
    percent = rng.randint(12, 60)
    quote = rng.choice(
        (
            "Small habits can add up to big changes over time",
            "We were surprised by how clear the pattern was",
            "This does not prove cause and effect, but it is a strong signal",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"People who {behavior} {outcome}, according to a new study by researchers at the "
        f"University of {town}.",
        lead_highlight=f"People who {behavior} {outcome}, a new study says.",
        facts=(
            (
                f"The team followed {participants:,} adults aged between {youngest} and "
                f"{youngest + rng.randint(20, 45)} for {months} months.",
                f"Researchers followed {participants:,} adults for {months} months.",
            ),
            (
                f"Those who {behavior} were {percent} percent more likely to {likely} than those "
                "who did not.",
                f"They were {percent} percent more likely to {likely}.",
            ),
            (
                f"The study, led by Dr. {researcher.full}, was published on {day} in "
                f"{rng.choice(JOURNALS)}.",
                f"The study was led by Dr. {researcher.full}.",
            ),
        ),
        quote=f'"{quote}," said Dr. {researcher.last}.',
        extras=(
            "The researchers said more work was needed to understand why the link exists.",
            "Participants filled in detailed questionnaires every three months.",
            "The study was funded by a national research council.",
        ),
    )


MOUNTAINS = ("Mount Carrow", "Grey Peak", "Mount Hollin", "Raven Crag", "Black Fell")
MOUNTAIN_CONDITIONS = (
    ("thick fog", "the fog came down"),
    ("heavy snow", "snow began to fall"),
    ("strong winds", "the wind picked up"),
    ("freezing rain", "the weather turned"),
)


def rescue_event(rng: random.Random) -> NewsEvent:
    town, day = rng.choice(TOWNS), rng.choice(WEEKDAYS)
    mountain = rng.choice(MOUNTAINS)
    conditions, change = rng.choice(MOUNTAIN_CONDITIONS)
    hikers = cap(number_word(rng.randint(2, 7)))
    hours = rng.randint(5, 20)
    youngest = rng.randint(17, 45)
    clock = f"{rng.randint(1, 11)} a.m."
    leader = draw_person(rng)
    quote = rng.choice(
        (
            "They did exactly the right thing by staying together and calling for help",
            "Conditions on the mountain were some of the worst we have seen this year",
            "Always check the forecast and carry a torch and spare warm clothes",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"{hikers} hikers were rescued from {mountain} near {town} on {day} after "
        f"spending {hours} hours stranded in {conditions}.",
        lead_highlight=f"{hikers} hikers were rescued from {mountain} after {hours} hours "
        f"stranded in {conditions}.",
        facts=(
            (
                f"A team of {rng.randint(8, 30)} volunteers from {town} Mountain Rescue reached "
                f"the group shortly after {clock}",
                f"Volunteers from {town} Mountain Rescue reached the group shortly after {clock}",
            ),
            (
                f"The hikers, aged between {youngest} and {youngest + rng.randint(5, 30)}, were "
                f"taken to {town} General Hospital with mild hypothermia.",
                "The hikers were treated in hospital for mild hypothermia.",
            ),
            (
                f"The group had set out on {next_weekday(day, -1)} morning but lost the path "
                f"as {change}.",
                f"The group lost the path as {change}.",
            ),
        ),
        quote=f'"{quote}," said rescue team leader {leader.full}.',
        extras=(
            "A rescue helicopter was also sent but could not land because of the weather.",
            "All of the hikers are expected to make a full recovery.",
            f"It was the team's {ordinal(rng.randint(12, 80))} call-out of the year.",
        ),
    )


PROMISES = (
    "build more affordable homes",
    "fix the town's roads",
    "reopen the public swimming pool",
    "cut waiting times at the town hall",
    "plant ten thousand trees",
    "improve bus services to nearby villages",
)


def election_event(rng: random.Random) -> NewsEvent:
    town, day = rng.choice(TOWNS), rng.choice(WEEKDAYS)
    month, _ = rng.choice(MONTHS)
    winner, loser = draw_people(rng, 2)
    share = rng.randint(51, 68)
    turnout = rng.randint(38, 72)
    promise = rng.choice(PROMISES)
    quote = rng.choice(
        (
            f"Tonight the people of {town} voted for change",
            "I will be a mayor for every street and every neighborhood",
            "The hard work starts tomorrow morning",
        )
    )
    years = number_word(rng.randint(4, 16))
    return NewsEvent(
        town=town,
        lead=f"{winner.full} has been elected mayor of {town}, winning {share} percent of the "
        f"vote in {day}'s election.",
        lead_highlight=f"{winner.full} has been elected mayor of {town} with {share} percent "
        "of the vote.",
        facts=(
            (
                f"{winner.last} defeated {loser.full}, who had been mayor for {years} years "
                f"and took {rng.randint(25, 100 - share)} percent.",
                f"{winner.last} defeated {loser.full}, who had been mayor for {years} years.",
            ),
            (
                f"Turnout was {turnout} percent, up from {turnout - rng.randint(2, 10)} percent "
                "at the last election.",
                f"Turnout was {turnout} percent.",
            ),
            (
                f"During the campaign, {winner.last} promised to {promise}.",
                f"{winner.last} has promised to {promise}.",
            ),
        ),
        quote=f'"{quote}," {winner.last} told supporters at {rng.choice(VENUES)}.',
        extras=(
            f"{loser.last} congratulated {winner.obj} in a short speech.",
            "Counting continued until well after midnight.",
            f"The new mayor will take office on {month} 1.",
        ),
    )


CHALLENGES = (  # activity, shortest and longest distance, slowest and fastest daily distance
    ("running", 150, 900, 15, 40),
    ("cycling", 500, 3000, 60, 150),
    ("walking", 100, 1000, 15, 30),
    ("swimming", 10, 60, 2, 5),
    ("rowing", 50, 400, 10, 30),
)
CAUSES = (
    ("the children's ward at {town} General Hospital", "nurses there cared for {poss} niece"),
    ("the {town} food bank", "{subj} volunteered there last winter"),
    ("a charity that trains guide dogs", "{poss} father lost his sight two years ago"),
    ("a cancer research charity", "{poss} best friend was diagnosed last year"),
    ("the local animal shelter", "{subj} adopted two cats from it"),
    ("{town} Mountain Rescue", "volunteers once helped {obj} after a fall"),
)


def charity_event(rng: random.Random) -> NewsEvent:
    town = rng.choice(TOWNS)
    fundraiser = draw_person(rng)
    challenge, shortest, longest, slowest, fastest = rng.choice(CHALLENGES)
    distance = rng.randint(shortest, longest)
    days = max(3, round(distance / rng.randint(slowest, fastest)))
    cause, reason = rng.choice(CAUSES)
    cause = cause.format(town=town)
    reason = reason.format(subj=fundraiser.subj, obj=fundraiser.obj, poss=fundraiser.poss)
    raised = rng.randrange(1_500, 80_001, 50)
    quote = rng.choice(
        (
            "There were days when I wanted to stop, but the messages of support kept me going",
            "I never imagined we would raise this much",
            "I am exhausted, but it was worth every kilometer",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"{fundraiser.full}, a {rng.randint(24, 71)}-year-old {rng.choice(JOBS)} from "
        f"{town}, has raised {raised:,} dollars for {cause} by {challenge} {distance} "
        "kilometers.",
        lead_highlight=f"{fundraiser.full} has raised {raised:,} dollars for {cause}.",
        facts=(
            (
                f"{fundraiser.first} completed the challenge in {days} days, covering an "
                f"average of {distance / days:.1f} kilometers a day.",
                f"{fundraiser.first} completed the {distance}-kilometer challenge in {days} days.",
            ),
            (
                f"{cap(fundraiser.subj)} said {fundraiser.subj} took on the challenge because "
                f"{reason}.",
                f"{fundraiser.first} took on the challenge because {reason}.",
            ),
            (
                f"More than {rng.randrange(50, 2001, 10):,} people donated through an online "
                f"page set up by {fundraiser.poss} family.",
                "Most of the money was donated through an online page.",
            ),
        ),
        quote=f'"{quote}," {fundraiser.first} said.',
        extras=(
            f"{fundraiser.first} was joined for the final stretch by about "
            f"{rng.randint(10, 60)} friends and neighbors.",
            f"The original target had been {raised // 2 // 100 * 100:,} dollars.",
            "A spokesperson for the charity said the money would make a real difference.",
        ),
    )


BRIDGE_DEFECTS = (
    "cracks in two of its steel supports",
    "serious rust on the underside of the deck",
    "damage to the stonework caused by last winter's floods",
    "worn bearings that allow the deck to move",
)


def bridge_event(rng: random.Random) -> NewsEvent:
    town, street = rng.choice(TOWNS), rng.choice(STREETS)
    bridge = f"{rng.choice(('Old', 'North', 'Victoria', 'Mill', 'Station', 'River'))} Bridge"
    (start_month, _), (inspection_month, _) = rng.sample(MONTHS, 2)
    start = f"{start_month} {rng.randint(1, 28)}"
    weeks = rng.randint(3, 20)
    cost = rng.randint(2, 25)
    defect = rng.choice(BRIDGE_DEFECTS)
    engineer = draw_person(rng)
    quote = rng.choice(
        (
            "We know this will be frustrating, but safety has to come first",
            "We will do everything we can to finish the work early",
            "Closing the bridge now avoids a much longer closure later",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"The {bridge} in {town} will close for {weeks} weeks from {start} so that "
        "engineers can carry out urgent repairs.",
        lead_highlight=f"The {bridge} in {town} will close for {weeks} weeks from {start}.",
        facts=(
            (
                f"An inspection in {inspection_month} found {defect}.",
                f"An inspection found {defect}.",
            ),
            (
                f"The work will cost about {cost} million dollars and will be paid for by the "
                "regional government.",
                f"The repairs will cost about {cost} million dollars.",
            ),
            (
                f"Drivers will be diverted via {street}, which is expected to add up to "
                f"{rng.randint(5, 25)} minutes to journeys at busy times.",
                f"Drivers will be diverted via {street}.",
            ),
        ),
        quote=f'"{quote}," said {engineer.full}, the council\'s head of transport.',
        extras=(
            f"About {rng.randrange(4_000, 25_001, 100):,} vehicles cross the bridge every day.",
            "Pedestrians and cyclists will still be able to use a temporary walkway.",
            f"The bridge was built in {rng.randint(1890, 1975)}.",
        ),
    )


RIVERS = ("River Wren", "River Calder", "River Tavy", "River Lune", "River Esk")


def flood_event(rng: random.Random) -> NewsEvent:
    town, street, day = rng.choice(TOWNS), rng.choice(STREETS), rng.choice(WEEKDAYS)
    river = rng.choice(RIVERS)
    homes = rng.randint(20, 600)
    rescued = rng.randint(3, 25)
    since = rng.randint(1950, 2015)
    restored = next_weekday(day, rng.randint(1, 3))
    official = draw_person(rng)
    quote = rng.choice(
        (
            "We have not seen rain like this in a generation",
            "Please stay away from flood water, even if it looks shallow",
            "Our crews have been working through the night",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"Heavy storms brought {rng.randint(40, 180)} millimeters of rain to {town} on "
        f"{day}, flooding {homes} homes and cutting power to "
        f"{rng.randrange(1_000, 30_001, 100):,} households.",
        lead_highlight=f"Heavy storms flooded {homes} homes in {town} on {day}.",
        facts=(
            (
                f"Emergency crews rescued {rescued} people from cars stranded on {street}.",
                f"Emergency crews rescued {rescued} people from cars stranded on {street}.",
            ),
            (
                f"The {river} rose more than {rng.randint(2, 5)} meters above its normal "
                f"level, the highest reading since {since}.",
                f"The {river} rose to its highest level since {since}.",
            ),
            (
                f"The power company said it expected to restore most supplies by {restored} "
                "evening.",
                f"Power should be restored to most homes by {restored} evening.",
            ),
        ),
        quote=f'"{quote}," said {official.full}, who leads the town\'s emergency team.',
        extras=(
            "Several schools were closed as a precaution.",
            f"A temporary shelter was opened at {rng.choice(VENUES)} for families who could not "
            "stay in their homes.",
            "Forecasters expect drier weather later in the week.",
        ),
    )


ARTIFACTS = (
    ("a silver pocket watch", "watch"),
    ("a hand-painted map of the coast", "map"),
    ("a carved wooden chess set", "chess set"),
    ("a gold ring set with a blue stone", "ring"),
    ("a porcelain vase", "vase"),
    ("a brass telescope", "telescope"),
    ("an oil painting of the harbor", "painting"),
)
DISCOVERIES = (
    ("in an attic", "clearing out {poss} late aunt's house"),
    ("in a garden shed", "tidying up {poss} garden"),
    ("in a box of old books", "sorting books for a school fair"),
    ("at a car boot sale", "looking for bargains on a Sunday morning"),
    ("under the floorboards of an old cottage", "renovating {poss} kitchen"),
)
BUYER_COUNTRIES = ("Canada", "Japan", "Germany", "Brazil", "Australia", "Sweden", "Mexico")


def auction_event(rng: random.Random) -> NewsEvent:
    town, day = rng.choice(TOWNS), rng.choice(WEEKDAYS[:6])
    artifact, noun = rng.choice(ARTIFACTS)
    place, activity = rng.choice(DISCOVERIES)
    finder = draw_person(rng)
    activity = activity.format(poss=finder.poss)
    price = rng.randrange(2_000, 250_001, 500)
    high = price * rng.randint(3, 9) // 10 // 100 * 100
    country = rng.choice(BUYER_COUNTRIES)
    quote = rng.choice(
        (
            "I almost threw it away",
            "I still cannot quite believe it",
            "It sat in a box for years before anyone looked at it properly",
        )
    )
    return NewsEvent(
        town=town,
        lead=f"{cap(artifact)} found {place} in {town} has sold at auction for {price:,} dollars.",
        lead_highlight=f"{cap(artifact)} found {place} has sold for {price:,} dollars.",
        facts=(
            (
                f"The {noun}, which experts believe is about {rng.randrange(80, 401, 10)} years "
                f"old, was discovered by {finder.full}, {with_article(rng.choice(JOBS))}, while "
                f"{activity}.",
                f"It was discovered by {finder.full} while {activity}.",
            ),
            (
                f"It had been expected to fetch between {high // 2:,} and {high:,} dollars.",
                f"It had been expected to fetch no more than {high:,} dollars.",
            ),
            (
                f"The buyer, a private collector from {country}, bid by telephone.",
                f"The buyer was a private collector from {country}.",
            ),
        ),
        quote=f'"{quote}," said {finder.last}.',
        extras=(
            f"The sale took place on {day} at an auction house in the city.",
            f"{finder.first} said part of the money would go toward a family holiday.",
            "Several bidders competed for the item in the room and online.",
        ),
    )


NEWS_EVENTS: tuple[Callable[[random.Random], NewsEvent], ...] = (
    fire_event,
    factory_event,
    match_event,
    study_event,
    rescue_event,
    election_event,
    charity_event,
    bridge_event,
    flood_event,
    auction_event,
)


REACTIONS = (
    "It has been the only thing anyone here is talking about",
    "I think most people here will be pleased",
    "We will have to wait and see what happens next",
    "I have lived here all my life and never seen anything like it",
)
RESIDENT_DESCRIPTIONS = ("who lives nearby", "a local shop owner", "a retired teacher")


def filler_sentences(rng: random.Random, town: str) -> list[str]:
    resident = draw_person(rng)
    return [
        f'"{rng.choice(REACTIONS)}," said {resident.full}, {rng.choice(RESIDENT_DESCRIPTIONS)}.',
        f"{town} lies about {rng.randint(5, 120)} kilometers from the nearest city and is best "
        f"known for its {rng.choice(('market', 'old harbor', 'summer festival', 'castle'))}.",
        "A spokesperson for the local council declined to comment further.",
        f"{town} has a population of about {rng.randrange(4_000, 90_001, 500):,} people.",
        "Officials said further details would be released later in the week.",
        "The news was widely discussed on local radio throughout the day.",
        f"It is the {ordinal(rng.randint(2, 6))} time this year that {town} has made "
        "regional headlines.",
        "More updates are expected in the coming days.",
    ]


def summarization_example(rng: random.Random) -> dict[str, str]:
    """Draw one ``tiny_summarization`` example whose article is within ``ARTICLE_WORDS``.

    Facts appear in the article in a random order and the highlights follow that order, so
    the highlights are not simply the first sentences of the article.
    """
    while True:
        event = rng.choice(NEWS_EVENTS)(rng)
        facts = rng.sample(event.facts, len(event.facts))
        highlighted = sorted(rng.sample(range(len(facts)), rng.randint(1, 2)))
        body = [article for article, _ in facts]
        body.insert(rng.randint(1, len(body)), event.quote)
        extras = rng.sample(event.extras, rng.randint(1, len(event.extras)))
        fillers = rng.sample(filler_sentences(rng, event.town), rng.randint(1, 4))
        dateline = f"{event.town.upper()} (Tiny Wire) -- " if rng.random() < 0.7 else ""
        article = dateline + " ".join([event.lead, *body, *extras, *fillers])
        if ARTICLE_WORDS[0] <= word_count(article) <= ARTICLE_WORDS[1]:
            highlights = [event.lead_highlight]
            highlights += [facts[i][1] for i in highlighted]
            return {
                "article": article,
                "highlights": "\n".join(highlights),
                "id": hashlib.sha1(article.encode("utf-8")).hexdigest(),
            }


# --------------------------------------------------------------------------------------------
# tiny_paraphrase: sentence pairs in GLUE MRPC's schema. A claim (a fact with named slots) is
# written twice by different templates and synonyms; a non-paraphrase first changes one fact of
# the claim (a number, a name, a place, a day, or its polarity), so the two sentences differ in
# wording either way and in meaning only when the label is 0.
# --------------------------------------------------------------------------------------------

PARAPHRASE_SHARE = 0.68  # MRPC: 67.4% of train and 68.4% of validation pairs are paraphrases

LISTED_COMPANIES = (
    "Northwind Foods", "Bluestone Energy", "Harbor Line Shipping", "Kestrel Motors",
    "Juniper Bank", "Orchard Telecom", "Silverleaf Pharma", "Redwood Steel",
    "Larkspur Airlines", "Copperfield Media", "Granite Insurance", "Summit Software",
)  # fmt: skip
CLUB_SUFFIXES = ("Rovers", "United", "Athletic", "Wanderers", "Albion", "City")
QUARTERS = ("first", "second", "third", "fourth")
PUBLIC_EVENTS = (
    ("protest", "demonstration"), ("football match", "football game"),
    ("street party", "street festival"), ("concert", "music concert"),
)  # fmt: skip
ROLES = (
    ("chief executive", "chief executive officer"), ("finance director", "chief financial officer"),
    ("chair", "chairperson"), ("head of research", "research director"),
)  # fmt: skip
TREATMENTS = (
    "daily aspirin", "vitamin D supplements", "a new asthma inhaler", "a low-salt diet",
    "regular exercise", "a blood pressure drug",
)  # fmt: skip
OUTCOMES = (
    "heart attacks", "migraine attacks", "blood pressure", "hospital visits",
    "joint pain",
)  # fmt: skip
RISE_VERBS = ("rose", "climbed", "increased", "jumped", "grew")
FALL_VERBS = ("fell", "dropped", "declined", "slid", "decreased")
RISE_NOUNS = ("rise", "increase", "jump", "gain")
FALL_NOUNS = ("fall", "drop", "decline")
PROFIT_WORDS = ("profit", "net profit", "earnings")
APPROVE_ACTIVE = ("approved", "backed", "gave the go-ahead to", "voted in favor of")
REJECT_ACTIVE = ("rejected", "turned down", "threw out", "voted against")
APPROVE_PASSIVE = ("approved", "backed", "given the go-ahead")
REJECT_PASSIVE = ("rejected", "turned down", "thrown out")
SHARE_RISE_VERBS = ("rose", "climbed", "gained", "jumped", "advanced")
SHARE_FALL_VERBS = ("fell", "dropped", "lost", "slid", "declined")
WORKS_PAST = ("reduced", "lowered", "cut")
FAILS_PAST = ("did not reduce", "had no effect on", "failed to lower")
WORKS_INFINITIVE = ("reduce", "lower", "cut")
FAILS_INFINITIVE = ("have no effect on", "do nothing for")

Claim = dict[str, object]
Template = Callable[[Claim, random.Random], str]
Change = Callable[[random.Random, Claim], Claim]


def moved(claim: Claim, rng: random.Random) -> str:
    return rng.choice(RISE_VERBS if claim["up"] else FALL_VERBS)


def movement(claim: Claim, rng: random.Random) -> str:
    return rng.choice(RISE_NOUNS if claim["up"] else FALL_NOUNS)


def traded(claim: Claim, rng: random.Random) -> str:
    return rng.choice(SHARE_RISE_VERBS if claim["up"] else SHARE_FALL_VERBS)


def voted(claim: Claim, rng: random.Random) -> str:
    return rng.choice(APPROVE_ACTIVE if claim["approved"] else REJECT_ACTIVE)


def voted_on(claim: Claim, rng: random.Random) -> str:
    return rng.choice(APPROVE_PASSIVE if claim["approved"] else REJECT_PASSIVE)


def acted(claim: Claim, rng: random.Random) -> str:
    return rng.choice(WORKS_PAST if claim["works"] else FAILS_PAST)


def act(claim: Claim, rng: random.Random) -> str:
    return rng.choice(WORKS_INFINITIVE if claim["works"] else FAILS_INFINITIVE)


def money(rng: random.Random, millions: int) -> str:
    return rng.choice((f"${millions} million", f"{millions} million dollars"))


def price(rng: random.Random, cents: int) -> str:
    return rng.choice((f"${cents / 100:.2f}", f"{cents / 100:.2f} dollars"))


def draw_earnings(rng: random.Random) -> Claim:
    return {
        "company": rng.choice(LISTED_COMPANIES),
        "quarter": rng.choice(QUARTERS),
        "up": rng.random() < 0.6,
        "pct": rng.randint(2, 45),
        "amount": rng.randint(12, 950),
    }


EARNINGS_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"{c['company']} said its {c['quarter']}-quarter {r.choice(PROFIT_WORDS)} "
        f"{moved(c, r)} {c['pct']} percent to "
        f"{money(r, c['amount'])}."
    ),
    lambda c, r: (
        f"{cap(r.choice(PROFIT_WORDS))} at {c['company']} "
        f"{moved(c, r)} {c['pct']} percent in the "
        f"{c['quarter']} quarter, to {money(r, c['amount'])}."
    ),
    lambda c, r: (
        f"In the {c['quarter']} quarter, {c['company']}'s {r.choice(PROFIT_WORDS)} "
        f"{moved(c, r)} by {c['pct']} percent to "
        f"{money(r, c['amount'])}."
    ),
    lambda c, r: (
        f"{c['company']} reported "
        f"{with_article(movement(c, r))} of {c['pct']} percent in "
        f"{c['quarter']}-quarter {r.choice(PROFIT_WORDS)}, to {money(r, c['amount'])}."
    ),
)


def draw_council_vote(rng: random.Random) -> Claim:
    return {
        "town": rng.choice(TOWNS),
        "homes": rng.randrange(20, 401, 5),
        "street": rng.choice(STREETS),
        "day": rng.choice(WEEKDAYS[:5]),
        "approved": rng.random() < 0.6,
    }


COUNCIL_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"The {c['town']} council "
        f"{voted(c, r)} plans for {c['homes']} new "
        f"homes on {c['street']} on {c['day']}."
    ),
    lambda c, r: (
        f"On {c['day']}, councillors in {c['town']} "
        f"{voted(c, r)} a plan to build "
        f"{c['homes']} homes on {c['street']}."
    ),
    lambda c, r: (
        f"Plans for {c['homes']} new homes on {c['street']} were "
        f"{voted_on(c, r)} by the {c['town']} "
        f"council on {c['day']}."
    ),
    lambda c, r: (
        f"A proposal to build {c['homes']} houses on {c['street']} was "
        f"{voted_on(c, r)} by {c['town']} "
        f"councillors on {c['day']}."
    ),
    lambda c, r: (
        f"{c['town']}'s council {voted(c, r)} "
        f"a development of {c['homes']} homes on {c['street']} at its meeting on {c['day']}."
    ),
)


def draw_match(rng: random.Random) -> Claim:
    home, away = rng.sample(TOWNS, 2)
    winner_goals = rng.randint(1, 6)
    return {
        "winner": f"{home} {rng.choice(CLUB_SUFFIXES)}",
        "loser": f"{away} {rng.choice(CLUB_SUFFIXES)}",
        "score": (winner_goals, rng.randint(0, winner_goals - 1)),
        "day": rng.choice(WEEKDAYS),
    }


def score(claim: Claim) -> str:
    won, lost = claim["score"]
    return f"{won}-{lost}"


MATCH_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"{c['winner']} {r.choice(('beat', 'defeated'))} {c['loser']} {score(c)} on {c['day']}."
    ),
    lambda c, r: f"{c['loser']} lost {score(c)} to {c['winner']} on {c['day']}.",
    lambda c, r: f"On {c['day']}, {c['winner']} won {score(c)} against {c['loser']}.",
    lambda c, r: f"{c['loser']} were beaten {score(c)} by {c['winner']} on {c['day']}.",
    lambda c, r: (
        f"{c['winner']} claimed a {score(c)} {r.choice(('win', 'victory'))} over "
        f"{c['loser']} on {c['day']}."
    ),
)


def draw_arrests(rng: random.Random) -> Claim:
    return {
        "people": rng.randint(3, 60),
        "event": rng.randrange(len(PUBLIC_EVENTS)),
        "town": rng.choice(TOWNS),
        "day": rng.choice(WEEKDAYS),
    }


def event_name(claim: Claim, rng: random.Random) -> str:
    return rng.choice(PUBLIC_EVENTS[claim["event"]])


ARREST_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"Police arrested {c['people']} people after a {event_name(c, r)} in "
        f"{c['town']} on {c['day']}."
    ),
    lambda c, r: (
        f"{c['people']} people were arrested by police following a {event_name(c, r)} "
        f"in {c['town']} on {c['day']}."
    ),
    lambda c, r: (
        f"On {c['day']}, police in {c['town']} detained {c['people']} people after a "
        f"{event_name(c, r)}."
    ),
    lambda c, r: (
        f"A {event_name(c, r)} in {c['town']} on {c['day']} ended with {c['people']} "
        "arrests, police said."
    ),
    lambda c, r: (
        f"Police said {c['people']} people had been arrested in {c['town']} after "
        f"{c['day']}'s {event_name(c, r)}."
    ),
)


def draw_share_move(rng: random.Random) -> Claim:
    return {
        "company": rng.choice(LISTED_COMPANIES),
        "up": rng.random() < 0.5,
        "pct": rng.randint(2, 30),
        "cents": rng.randint(500, 9_000),
        "day": rng.choice(WEEKDAYS[:5]),
    }


SHARE_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"Shares of {c['company']} "
        f"{traded(c, r)} {c['pct']} percent to "
        f"{price(r, c['cents'])} on {c['day']}."
    ),
    lambda c, r: (
        f"{c['company']} stock "
        f"{traded(c, r)} {c['pct']} percent on "
        f"{c['day']}, closing at {price(r, c['cents'])}."
    ),
    lambda c, r: (
        f"On {c['day']}, {c['company']}'s shares "
        f"{traded(c, r)} {c['pct']} percent to end at "
        f"{price(r, c['cents'])}."
    ),
    lambda c, r: (
        f"{c['company']} shares ended {c['day']} {'up' if c['up'] else 'down'} "
        f"{c['pct']} percent at {price(r, c['cents'])}."
    ),
)


def draw_appointment(rng: random.Random) -> Claim:
    new, old = draw_people(rng, 2)
    return {
        "new": new.full,
        "old": old.full,
        "company": rng.choice(LISTED_COMPANIES),
        "role": rng.randrange(len(ROLES)),
    }


def role_name(claim: Claim, rng: random.Random) -> str:
    return rng.choice(ROLES[claim["role"]])


APPOINTMENT_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"{c['company']} named {c['new']} as its new {role_name(c, r)}, replacing {c['old']}."
    ),
    lambda c, r: (
        f"{c['new']} has been appointed {role_name(c, r)} of {c['company']}, succeeding {c['old']}."
    ),
    lambda c, r: (
        f"{c['old']} will be replaced as {role_name(c, r)} of {c['company']} by {c['new']}."
    ),
    lambda c, r: (
        f"{c['company']} has chosen {c['new']} to succeed {c['old']} as {role_name(c, r)}."
    ),
    lambda c, r: (
        f"{c['new']} will take over from {c['old']} as {c['company']}'s {role_name(c, r)}."
    ),
)


def draw_study(rng: random.Random) -> Claim:
    return {
        "patients": rng.randrange(200, 20_001, 50),
        "treatment": rng.choice(TREATMENTS),
        "outcome": rng.choice(OUTCOMES),
        "works": rng.random() < 0.6,
    }


STUDY_TEMPLATES: tuple[Template, ...] = (
    lambda c, r: (
        f"A study of {c['patients']:,} patients found that {c['treatment']} "
        f"{acted(c, r)} {c['outcome']}."
    ),
    lambda c, r: (
        f"Researchers who followed {c['patients']:,} patients found that "
        f"{c['treatment']} {acted(c, r)} {c['outcome']}."
    ),
    lambda c, r: (
        f"{cap(c['treatment'])} {acted(c, r)} "
        f"{c['outcome']} in a study of {c['patients']:,} patients, researchers said."
    ),
    lambda c, r: (
        f"In a trial of {c['patients']:,} patients, {c['treatment']} was found "
        f"to {act(c, r)} {c['outcome']}."
    ),
)


def redrawn(draw: Callable[[random.Random], Claim], *slots: str) -> Change:
    """A change of fact: ``slots`` drawn again, by the claim kind's draw, until they differ."""

    def change(rng: random.Random, claim: Claim) -> Claim:
        while True:
            fresh = draw(rng)
            if any(fresh[slot] != claim[slot] for slot in slots):
                return {**claim, **{slot: fresh[slot] for slot in slots}}

    return change


def swapped(first: str, second: str) -> Change:
    """A change of fact: two slots exchanged (who beat whom, who replaces whom)."""
    return lambda rng, claim: {**claim, first: claim[second], second: claim[first]}


def replaced_newcomer(rng: random.Random, claim: Claim) -> Claim:
    """A change of fact: someone else (neither of the two named) takes the post."""
    while True:
        newcomer = draw_person(rng).full
        if newcomer not in (claim["new"], claim["old"]):
            return {**claim, "new": newcomer}


@dataclass(frozen=True)
class ClaimKind:
    draw: Callable[[random.Random], Claim]
    templates: tuple[Template, ...]
    changes: tuple[Change, ...]


CLAIM_KINDS = (
    ClaimKind(
        draw_earnings,
        EARNINGS_TEMPLATES,
        tuple(redrawn(draw_earnings, s) for s in ("company", "quarter", "up", "pct", "amount")),
    ),
    ClaimKind(
        draw_council_vote,
        COUNCIL_TEMPLATES,
        tuple(
            redrawn(draw_council_vote, s) for s in ("town", "homes", "street", "day", "approved")
        ),
    ),
    ClaimKind(
        draw_match,
        MATCH_TEMPLATES,
        (swapped("winner", "loser"), redrawn(draw_match, "score"), redrawn(draw_match, "day")),
    ),
    ClaimKind(
        draw_arrests,
        ARREST_TEMPLATES,
        tuple(redrawn(draw_arrests, s) for s in ("people", "event", "town", "day")),
    ),
    ClaimKind(
        draw_share_move,
        SHARE_TEMPLATES,
        tuple(redrawn(draw_share_move, s) for s in ("company", "up", "pct", "cents", "day")),
    ),
    ClaimKind(
        draw_appointment,
        APPOINTMENT_TEMPLATES,
        (
            swapped("new", "old"),
            replaced_newcomer,
            *(redrawn(draw_appointment, s) for s in ("company", "role")),
        ),
    ),
    ClaimKind(
        draw_study,
        STUDY_TEMPLATES,
        tuple(redrawn(draw_study, s) for s in ("patients", "treatment", "outcome", "works")),
    ),
)


def paraphrase_pair(rng: random.Random, split: str) -> dict[str, object]:
    """Draw one ``tiny_paraphrase`` pair (``idx`` is added when it is written).

    Both sentences are written by independently drawn templates and synonyms (redrawn if they
    come out identical); for a non-paraphrase (label 0), the second states a changed claim.
    """
    kind = rng.choice(CLAIM_KINDS)
    claim = kind.draw(rng)
    label = 1 if rng.random() < PARAPHRASE_SHARE else 0
    second_claim = claim if label else rng.choice(kind.changes)(rng, claim)
    sentence1 = rng.choice(kind.templates)(claim, rng)
    while True:
        sentence2 = rng.choice(kind.templates)(second_claim, rng)
        if sentence2 != sentence1:
            return {"sentence1": sentence1, "sentence2": sentence2, "label": label}


# --------------------------------------------------------------------------------------------
# tiny_squad_v2: paragraphs about invented towns, people, bridges, companies and football clubs
# with one question each, in SQuAD v2's schema. A paragraph is a lead sentence and some of its
# topic's other facts; an answerable question asks for a span of one of the sentences kept, an
# unanswerable one asks (with the paragraph's own names) what no sentence states: a fact left
# out, or a near miss of one kept (the founding of a company named only as an employer, the
# away shirts of a club whose home shirts are described), as SQuAD v2's adversarial questions.
# --------------------------------------------------------------------------------------------

CONTEXT_WORDS = (40, 90)
UNANSWERABLE_SHARE = 0.5  # SQuAD v2 dev: 5,945 of 11,873 questions have no answer
LANDMARKS = ("Corn Exchange", "Guildhall", "Old Mill", "Clock Tower", "Abbey Gate")
FESTIVALS = (
    ("lantern festival", ("November", "December", "January")),
    ("cheese fair", ("September", "October")),
    ("summer regatta", ("June", "July", "August")),
    ("folk music festival", ("May", "June", "July")),
)
FOUNDER_JOBS = ("miller", "merchant", "blacksmith", "weaver", "shepherd", "boat builder")
TOWN_KINDS = ("market town", "fishing town", "small cathedral city", "former mill town")
EMPLOYER_KINDS = (
    ("Mills", "paper"), ("Glassworks", "glass bottles"), ("Textiles", "wool blankets"),
    ("Engineering", "ship engines"), ("Cycles", "bicycle frames"),
)  # fmt: skip
NATIONALITIES = ("Canadian", "Irish", "Danish", "Chilean", "Kenyan", "Portuguese", "Scottish")
PROFESSIONS = (
    ("marine biologist", "biology", "coral reefs"), ("architect", "architecture", "timber houses"),
    ("composer", "music", "choral music"), ("astronomer", "physics", "distant galaxies"),
    ("novelist", "literature", "historical fiction"), ("civil engineer", "engineering",
    "flood defenses"), ("botanist", "botany", "alpine plants"),
)  # fmt: skip
PRIZES = ("Halden Prize", "Merrow Medal", "Ashcombe Award", "Lindqvist Prize")
PARTNERS = ("husband", "wife", "partner")
BRIDGE_KINDS = ("stone arch", "steel suspension", "iron truss", "concrete beam")
BRIDGE_ROADS = ("the coast road", "the main road to {city}", "two lanes of traffic")
CLOSURE_CAUSES = (
    "cracks were found in its supports", "a flood damaged one of its piers",
    "a lorry struck its railings",
)  # fmt: skip
BUSINESSES = (
    ("Instruments", "musical instrument", ("Aria violin", "Tempo keyboard", "Echo flute")),
    ("Foods", "food", ("Harvest oat bar", "Sunrise jam", "Golden crumpet")),
    ("Optics", "optics", ("Falcon binoculars", "Clearview lens", "Polaris telescope")),
    ("Outdoor", "outdoor clothing", ("Summit jacket", "Trail boot", "Storm tent")),
)
MEETING_PLACES = ("a bakery", "a shipyard", "a laboratory", "a newspaper")
GROUND_NAMES = ("Mill", "Victoria", "Meadow", "Station", "Castle")
GROUND_KINDS = ("Park", "Road", "Lane", "Ground")
CUPS = ("County Cup", "Northern League", "Regional Trophy", "Senior Shield")
CLUB_COLORS = (
    ("black and white", "Magpies"), ("red", "Reds"), ("sky blue", "Sky Blues"),
    ("green", "Greens"), ("amber", "Tigers"),
)  # fmt: skip


@dataclass(frozen=True)
class QA:
    """A question one sentence answers, with the span that answers it.

    ``variants`` are other spans of that sentence an annotator could mark (validation carries
    them as extra gold answers); ``standalone`` questions name nothing but the paragraph's
    subject, so they can be asked, unanswerable, of a paragraph that leaves their sentence out.
    """

    question: str
    answer: str
    variants: tuple[str, ...] = ()
    standalone: bool = True


@dataclass(frozen=True)
class Fact:
    """One sentence of a paragraph, what it answers, and ``decoys``: questions about its names
    that neither it nor any other sentence of its topic answers."""

    sentence: str
    questions: tuple[QA, ...]
    decoys: tuple[str, ...] = ()


def town_topic(rng: random.Random) -> tuple[str, list[Fact]]:
    town, city = rng.sample(TOWNS, 2)
    river, kind = rng.choice(RIVERS), rng.choice(TOWN_KINDS)
    km, direction = rng.randint(8, 90), rng.choice(DIRECTIONS)
    founder, job = draw_person(rng), rng.choice(FOUNDER_JOBS)
    founded = rng.randint(1120, 1850)
    festival, months = rng.choice(FESTIVALS)
    month = rng.choice(months)
    census, population = rng.randint(2001, 2021), rng.randrange(3_000, 60_001, 100)
    suffix, product = rng.choice(EMPLOYER_KINDS)
    employer, workers = f"{rng.choice(SURNAMES)} {suffix}", rng.randint(150, 2_500)
    landmark, built = rng.choice(LANDMARKS), founded + rng.randint(5, 150)
    return town, [
        Fact(
            f"{town} is a {kind} on the {river}, about {km} kilometers {direction} of {city}.",
            (
                QA(f"Which river is {town} on?", river, (f"the {river}",)),
                QA(
                    f"How far is {town} from {city}?",
                    f"about {km} kilometers",
                    (f"{km} kilometers",),
                ),
                QA(f"What kind of town is {town}?", kind, (f"a {kind}",)),
            ),
            (f"How far is {town} from the sea?", f"How long is the {river}?"),
        ),
        Fact(
            f"It was founded in {founded} by {founder.full}, {with_article(job)}, who built the "
            "first houses by the river.",
            (
                QA(f"When was {town} founded?", str(founded), (f"in {founded}",)),
                QA(f"Who founded {town}?", founder.full),
                QA(f"What was the job of {founder.full}?", job, (with_article(job),), False),
            ),
            (f"When did {founder.full} die?", f"Who built the first bridge in {town}?"),
        ),
        Fact(
            f"{town} is best known for its {festival}, which is held every {month}.",
            (
                QA(f"What is {town} best known for?", festival, (f"its {festival}",)),
                QA(f"In which month is the {festival} held?", month, (f"every {month}",), False),
            ),
            (f"When was the {festival} first held?", f"What is {city} best known for?"),
        ),
        Fact(
            f"At the census of {census}, the town had a population of {population:,}.",
            (
                QA(f"What was the population of {town}?", f"{population:,}"),
                QA(
                    f"When was the census that counted {population:,} people taken?",
                    str(census),
                    (),
                    False,
                ),
            ),
            (
                f"What was the population of {town} in {census - 10}?",
                f"What was the population of {city} at the census of {census}?",
            ),
        ),
        Fact(
            f"The largest employer is {employer}, which makes {product} and has "
            f"{workers:,} workers.",
            (
                QA(f"What is the largest employer in {town}?", employer),
                QA(f"What does {employer} make?", product, (), False),
                QA(f"How many workers does {employer} have?", f"{workers:,}", (), False),
            ),
            (f"When was {employer} founded?", f"What is the second largest employer in {town}?"),
        ),
        Fact(
            f"The oldest building in the town is the {landmark}, which dates from {built}.",
            (
                QA(f"What is the oldest building in {town}?", f"the {landmark}", (landmark,)),
                QA(f"When was the {landmark} of {town} built?", str(built), (), False),
            ),
            (f"What is the newest building in {town}?", f"Who designed the {landmark}?"),
        ),
    ]


def person_topic(rng: random.Random) -> tuple[str, list[Fact]]:
    person = draw_person(rng)
    full, last, subj, poss = person.full, person.last, cap(person.subj), person.poss
    born, nationality = rng.randint(1920, 1985), rng.choice(NATIONALITIES)
    profession, subject, topic = rng.choice(PROFESSIONS)
    home_town, university, later_home = rng.sample(TOWNS, 3)
    parent, other_parent = rng.sample(("mother", "father"), 2)
    job = rng.choice(JOBS)
    graduated = born + rng.randint(21, 26)
    prize, prize_year = rng.choice(PRIZES), graduated + rng.randint(5, 30)
    partner, children = rng.choice(PARTNERS), rng.randint(2, 4)
    return full, [
        Fact(
            f"{full} (born {born}) is {with_article(nationality)} {profession}.",
            (
                QA(f"When was {full} born?", str(born), (f"born {born}",)),
                QA(f"What is {full}'s profession?", profession, (f"{nationality} {profession}",)),
                QA(f"What nationality is {full}?", nationality),
            ),
            (f"Where was {full} born?",),
        ),
        Fact(
            f"{subj} grew up in {home_town}, where {poss} {parent} worked as {with_article(job)}.",
            (
                QA(f"Where did {full} grow up?", home_town, (f"in {home_town}",)),
                QA(f"What did {last}'s {parent} do for a living?", job, (with_article(job),)),
            ),
            (
                f"What did {last}'s {other_parent} do for a living?",
                f"When did {last} leave {home_town}?",
            ),
        ),
        Fact(
            f"{subj} studied {subject} at the University of {university} and graduated in "
            f"{graduated}.",
            (
                QA(f"What did {full} study?", subject),
                QA(
                    f"Where did {full} study?",
                    f"the University of {university}",
                    (f"University of {university}",),
                ),
                QA(f"When did {last} graduate?", str(graduated), (f"in {graduated}",)),
            ),
            (
                f"When did {last} start at the University of {university}?",
                f"Who taught {subject} to {last}?",
            ),
        ),
        Fact(
            f"In {prize_year}, {person.subj} won the {prize} for {poss} work on {topic}.",
            (
                QA(f"Which prize did {full} win?", f"the {prize}", (prize,)),
                QA(f"When did {last} win the {prize}?", str(prize_year), (), False),
                QA(
                    f"For what did {last} win the {prize}?",
                    topic,
                    (f"{poss} work on {topic}", f"work on {topic}"),
                    False,
                ),
            ),
            (f"Who presented the {prize} to {last}?", f"How much money came with the {prize}?"),
        ),
        Fact(
            f"{subj} now lives in {later_home} with {poss} {partner} and their "
            f"{number_word(children)} children.",
            (
                QA(f"Where does {full} live now?", later_home),
                QA(f"How many children does {last} have?", number_word(children)),
            ),
            (f"What are the names of {last}'s children?", f"When did {last} move to {later_home}?"),
        ),
    ]


def bridge_topic(rng: random.Random) -> tuple[str, list[Fact]]:
    name = f"{rng.choice(SURNAMES)} Bridge"
    town, city = rng.sample(TOWNS, 2)
    river, kind = rng.choice(RIVERS), rng.choice(BRIDGE_KINDS)
    road = rng.choice(BRIDGE_ROADS).format(city=city)
    engineer, opened = draw_person(rng), rng.randint(1820, 1990)
    length = rng.randint(60, 900)
    span = rng.randint(20, length // 2)
    cost, trust = rng.randrange(40_000, 2_000_001, 1_000), f"{town} Bridge Trust"
    vehicles = rng.randrange(2_000, 40_001, 500)
    closed, cause = opened + rng.randint(15, 2023 - opened), rng.choice(CLOSURE_CAUSES)
    return name, [
        Fact(
            f"The {name} is a {kind} bridge that carries {road} across the {river} at {town}.",
            (
                QA(f"Which river does the {name} cross?", river, (f"the {river}",)),
                QA(f"Where is the {name}?", town, (f"at {town}",)),
                QA(f"What does the {name} carry?", road),
            ),
            (f"How many bridges cross the {river} at {town}?", f"Where does the {river} rise?"),
        ),
        Fact(
            f"It was designed by the engineer {engineer.full} and opened in {opened}.",
            (
                QA(f"Who designed the {name}?", engineer.full, (f"the engineer {engineer.full}",)),
                QA(f"When did the {name} open?", str(opened), (f"in {opened}",)),
            ),
            (f"When did work on the {name} begin?", f"What else did {engineer.full} design?"),
        ),
        Fact(
            f"The bridge is {length} meters long, and its main span measures {span} meters.",
            (
                QA(f"How long is the {name}?", f"{length} meters"),
                QA(f"How long is the main span of the {name}?", f"{span} meters"),
            ),
            (f"How wide is the {name}?", f"How high above the water is the {name}?"),
        ),
        Fact(
            f"Building it cost {cost:,} pounds, which was paid by the {trust}.",
            (
                QA(f"How much did the {name} cost to build?", f"{cost:,} pounds", (f"{cost:,}",)),
                QA(f"Who paid for the {name}?", f"the {trust}", (trust,)),
            ),
            (f"How much did the repairs to the {name} cost?", f"When was the {trust} set up?"),
        ),
        Fact(
            f"Today about {vehicles:,} vehicles cross it every day.",
            (
                QA(
                    f"How many vehicles cross the {name} every day?",
                    f"about {vehicles:,}",
                    (f"{vehicles:,}",),
                ),
            ),
            (f"How many people walk across the {name} every day?",),
        ),
        Fact(
            f"The bridge was closed for repairs in {closed} after {cause}.",
            (
                QA(f"When was the {name} closed for repairs?", str(closed), (f"in {closed}",)),
                QA(f"Why was the {name} closed in {closed}?", cause, (f"after {cause}",), False),
            ),
            (f"When did the {name} reopen?",),
        ),
    ]


def company_topic(rng: random.Random) -> tuple[str, list[Fact]]:
    suffix, industry, products = rng.choice(BUSINESSES)
    name, town = f"{rng.choice(SURNAMES)} {suffix}", rng.choice(TOWNS)
    first, second = draw_people(rng, 2)
    founded, product = rng.randint(1850, 2005), rng.choice(products)
    launched = rng.randint(founded + 1, 2023)
    staff, countries = rng.randrange(40, 12_001, 10), rng.randint(2, 12)
    sales_year, sales = rng.randint(2015, 2023), rng.randint(5, 900)
    founders = f"{first.full} and {second.full}"
    return name, [
        Fact(
            f"{name} is {with_article(industry)} company with its headquarters in {town}.",
            (
                QA(f"Where is {name} based?", town, (f"in {town}",)),
                QA(
                    f"What kind of company is {name}?",
                    f"{industry} company",
                    (industry, f"{with_article(industry)} company"),
                ),
            ),
            (f"Where is the largest factory of {name}?",),
        ),
        Fact(
            f"It was founded in {founded} by {founders}, who met while working at "
            f"{rng.choice(MEETING_PLACES)}.",
            (
                QA(f"When was {name} founded?", str(founded), (f"in {founded}",)),
                QA(f"Who founded {name}?", founders),
            ),
            (f"Who is the chief executive of {name}?", f"When did {first.full} leave {name}?"),
        ),
        Fact(
            f"Its best-known product is the {product}, first sold in {launched}.",
            (
                QA(f"What is the best-known product of {name}?", f"the {product}", (product,)),
                QA(f"When was the {product} first sold?", str(launched), (), False),
            ),
            (f"What was the first product of {name}?", f"How much does the {product} cost?"),
        ),
        Fact(
            f"The company employs {staff:,} people and sells its products in "
            f"{number_word(countries)} countries.",
            (
                QA(f"How many people does {name} employ?", f"{staff:,}", (f"{staff:,} people",)),
                QA(f"In how many countries does {name} sell its products?", number_word(countries)),
            ),
            (
                f"In which countries does {name} make its products?",
                f"How many shops does {name} have?",
            ),
        ),
        Fact(
            f"In {sales_year}, {name} reported sales of {sales} million dollars.",
            (
                QA(
                    f"How much did {name} report in sales?",
                    f"{sales} million dollars",
                    (f"{sales} million",),
                ),
                QA(
                    f"In which year did {name} report sales of {sales} million dollars?",
                    str(sales_year),
                    (),
                    False,
                ),
            ),
            (
                f"What was the profit of {name} in {sales_year}?",
                f"What were the sales of {name} in {sales_year - 1}?",
            ),
        ),
    ]


def club_topic(rng: random.Random) -> tuple[str, list[Fact]]:
    town, rival_town = rng.sample(TOWNS, 2)
    club = f"{town} {rng.choice(CLUB_SUFFIXES)}"
    rival = f"{rival_town} {rng.choice(CLUB_SUFFIXES)}"
    founded = rng.randint(1870, 1960)
    ground, capacity = (
        f"{rng.choice(GROUND_NAMES)} {rng.choice(GROUND_KINDS)}",
        rng.randrange(2_000, 35_001, 100),
    )
    best_year, cup, manager = rng.randint(founded + 10, 2022), rng.choice(CUPS), draw_person(rng)
    color, nickname = rng.choice(CLUB_COLORS)
    scorer, goals = draw_person(rng), rng.randint(60, 250)
    first_year = rng.randint(founded + 5, 2000)
    last_year = first_year + rng.randint(6, 18)
    return club, [
        Fact(
            f"{club} is a football club based in {town}, founded in {founded}.",
            (QA(f"When was {club} founded?", str(founded), (f"in {founded}",)),),
            (f"Who founded {club}?",),
        ),
        Fact(
            f"The club plays its home matches at {ground}, which holds {capacity:,} spectators.",
            (
                QA(f"Where does {club} play its home matches?", ground, (f"at {ground}",)),
                QA(
                    f"How many spectators does {ground} hold?",
                    f"{capacity:,}",
                    (f"{capacity:,} spectators",),
                    False,
                ),
            ),
            (f"When was {ground} built?", f"Where does {club} train?"),
        ),
        Fact(
            f"Its most successful season came in {best_year}, when it won the {cup} under "
            f"manager {manager.full}.",
            (
                QA(
                    f"When did {club} have its most successful season?",
                    str(best_year),
                    (f"in {best_year}",),
                ),
                QA(f"What did {club} win in {best_year}?", f"the {cup}", (cup,), False),
                QA(
                    f"Who managed {club} when it won the {cup}?",
                    manager.full,
                    (f"manager {manager.full}",),
                    False,
                ),
            ),
            (
                f"Who was the captain of {club} in {best_year}?",
                f"How many times has {club} won the {cup}?",
            ),
        ),
        Fact(
            f'Supporters call the team "the {nickname}" because of its {color} shirts.',
            (
                QA(f"What do supporters call {club}?", f"the {nickname}", (nickname,)),
                QA(f"What color are the shirts of {club}?", color),
            ),
            (f"What color are the away shirts of {club}?",),
        ),
        Fact(
            f"Its fiercest rival is {rival}, from the neighboring town of {rival_town}.",
            (QA(f"Who is the fiercest rival of {club}?", rival),),
            (f"Who is the manager of {rival}?", f"When did {club} last play {rival}?"),
        ),
        Fact(
            f"The club's record goalscorer is {scorer.full}, who scored {goals} goals between "
            f"{first_year} and {last_year}.",
            (
                QA(f"Who is the record goalscorer of {club}?", scorer.full),
                QA(
                    f"How many goals did {scorer.full} score?",
                    str(goals),
                    (f"{goals} goals",),
                    False,
                ),
            ),
            (f"How many games did {scorer.full} play for {club}?",),
        ),
    ]


SQUAD_TOPICS = (town_topic, person_topic, bridge_topic, company_topic, club_topic)


def span_start(sentence: str, text: str, near: tuple[int, int] | None = None) -> int | None:
    """Where ``text`` starts in ``sentence``: its only occurrence, or (``near`` given) its only
    occurrence overlapping that span; None when that is not unique."""
    starts = [i for i in range(len(sentence)) if sentence.startswith(text, i)]
    if near is not None:
        starts = [i for i in starts if i < near[1] and i + len(text) > near[0]]
    return starts[0] if len(starts) == 1 else None


def gold_answers(rng: random.Random, qa: QA, sentence: str, offset: int, split: str) -> dict:
    """SQuAD's answers of one question: in train the span, in validation 1-3 annotators' spans
    (repeats and variants, as in SQuAD dev); each ``answer_start`` indexes the context."""
    start = span_start(sentence, qa.answer)
    assert start is not None, (qa.answer, sentence)
    spans = {qa.answer: start}
    for variant in qa.variants:
        where = span_start(sentence, variant, (start, start + len(qa.answer)))
        assert where is not None, (variant, sentence)
        spans[variant] = where
    texts = [qa.answer]
    if split != "train":
        texts += [rng.choice(list(spans)) for _ in range(rng.randint(0, 2))]
    return {"text": texts, "answer_start": [offset + spans[text] for text in texts]}


def squad_example(rng: random.Random, split: str) -> dict[str, object]:
    """Draw one ``tiny_squad_v2`` example whose context is within ``CONTEXT_WORDS``."""
    while True:
        title, facts = rng.choice(SQUAD_TOPICS)(rng)
        lead, rest = facts[0], facts[1:]
        kept_indices = sorted(rng.sample(range(len(rest)), rng.randint(2, len(rest))))
        kept = [lead, *(rest[i] for i in kept_indices)]
        left_out = [fact for i, fact in enumerate(rest) if i not in kept_indices]
        context = " ".join(fact.sentence for fact in kept)
        if not CONTEXT_WORDS[0] <= word_count(context) <= CONTEXT_WORDS[1]:
            continue
        if rng.random() < UNANSWERABLE_SHARE:
            omitted = [qa.question for fact in left_out for qa in fact.questions if qa.standalone]
            near_misses = [question for fact in kept for question in fact.decoys]
            pools = [pool for pool in (omitted, near_misses) if pool]
            question = rng.choice(rng.choice(pools))
            answers = {"text": [], "answer_start": []}
        else:
            position = rng.randrange(len(kept))
            fact = kept[position]
            offset = sum(len(f.sentence) + 1 for f in kept[:position])
            qa = rng.choice(fact.questions)
            if span_start(fact.sentence, qa.answer) is None:
                continue  # the answer's words occur twice in its sentence: ambiguous span
            question, answers = qa.question, gold_answers(rng, qa, fact.sentence, offset, split)
            for text, start in zip(answers["text"], answers["answer_start"], strict=True):
                assert context[start : start + len(text)] == text, (text, start, context)
        title = title.replace(" ", "_")
        digest = hashlib.sha1(f"{title}\n{context}\n{question}".encode()).hexdigest()
        return {
            "id": digest[:24],
            "title": title,
            "context": context,
            "question": question,
            "answers": answers,
        }


# --------------------------------------------------------------------------------------------
# Writing the files.
# --------------------------------------------------------------------------------------------


def unique_records(
    draw: Callable[[random.Random], dict[str, str]], rng: random.Random, key: str, seen: set[str]
) -> Iterator[dict[str, str]]:
    """Yield records from ``draw`` whose ``key`` field was not seen before, in draw order."""
    while True:
        record = draw(rng)
        if record[key] not in seen:
            seen.add(record[key])
            yield record


def write_dataset(
    out_dir: Path, name: str, draw: Callable[[random.Random], dict[str, str]], key: str
) -> None:
    """Write every split of one dataset; ``key`` names the field kept unique across splits."""
    (out_dir / name).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for split, size in SPLIT_SIZES.items():
        records = unique_records(draw, random.Random(f"{SEED}/{name}/{split}"), key, seen)
        lines = [json.dumps(next(records), ensure_ascii=False) + "\n" for _ in range(size)]
        with open(out_dir / name / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)


def write_prompted_dataset(
    out_dir: Path,
    name: str,
    draw: Callable[[random.Random, str], dict[str, object]],
    key: Callable[[dict[str, object]], str],
    index_field: str | None = None,
) -> None:
    """Write every split (``PROMPTED_SPLIT_SIZES``) of a classification or QA dataset.

    ``draw`` is told the split (validation rows may carry several gold answers); ``key`` is
    kept unique across splits; ``index_field``, if set, numbers each split's rows from 0 and
    comes first, as GLUE's ``idx``.
    """
    (out_dir / name).mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for split, size in PROMPTED_SPLIT_SIZES.items():
        rng = random.Random(f"{SEED}/{name}/{split}")
        lines: list[str] = []
        while len(lines) < size:
            record = draw(rng, split)
            if key(record) in seen:
                continue
            seen.add(key(record))
            if index_field is not None:
                record = {index_field: len(lines), **record}
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        with open(out_dir / name / f"{split}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            f.writelines(lines)


def generate(out_dir: Path) -> None:
    """Write ``tiny_lm``, ``tiny_summarization``, ``tiny_paraphrase`` and ``tiny_squad_v2``
    under ``out_dir``."""
    write_dataset(out_dir, "tiny_lm", lm_document, key="text")
    write_dataset(out_dir, "tiny_summarization", summarization_example, key="article")
    write_prompted_dataset(
        out_dir,
        "tiny_paraphrase",
        paraphrase_pair,
        key=lambda pair: f"{pair['sentence1']}\n{pair['sentence2']}",
        index_field="idx",
    )
    write_prompted_dataset(out_dir, "tiny_squad_v2", squad_example, key=lambda row: row["id"])


if __name__ == "__main__":
    generate(Path(__file__).resolve().parent)
