"""The COCO synonym lists of the CHAIR family, one line per COCO class: the first entry is the class ("node
word"), the others map to it.

``CHAIR_SYNONYMS`` is LisaAnne/Hallucination ``data/synonyms.txt`` (the list OPERA, Maxlinn's
CHAIR-metric-standalone and lmms-eval carry too), quirks kept: it is split on ", " without stripping, so the
entry "  motor bike" (double space) becomes " motor bike" and never matches; " cheesecake" likewise. Trailing
spaces after "bison" and "chesterfield" are left out: the reader strips each line.

``REFINED_SYNONYMS`` is ``eval/data/synonyms_refine.txt`` of RLHF-V (3d35a91; the RLAIF-V Object HalBench
scorer reads the same file name): the same 80 classes, six lines changed (``_REFINED_LINES``): the spacing
fixed, duplicates dropped, plus "brother", "pedestrian", "coffee table" and "remote control".
"""

CHAIR_SYNONYMS = """\
person, girl, boy, man, woman, kid, child, chef, baker, people, adult, rider, children, baby, worker, passenger, sister, biker, policeman, cop, officer, lady, cowboy, bride, groom, male, female, guy, traveler, mother, father, gentleman, pitcher, player, skier, snowboarder, skater, skateboarder, person, woman, guy, foreigner, child, gentleman, caller, offender, coworker, trespasser, patient, politician, soldier, grandchild, serviceman, walker, drinker, doctor, bicyclist, thief, buyer, teenager, student, camper, driver, solider, hunter, shopper, villager
bicycle, bike, bicycle, bike, unicycle, minibike, trike
car, automobile, van, minivan, sedan, suv, hatchback, cab, jeep, coupe, taxicab, limo, taxi
motorcycle, scooter,  motor bike, motor cycle, motorbike, scooter, moped
airplane, jetliner, plane, air plane, monoplane, aircraft, jet, jetliner, airbus, biplane, seaplane
bus, minibus, trolley
train, locomotive, tramway, caboose
truck, pickup, lorry, hauler, firetruck
boat, ship, liner, sailboat, motorboat, dinghy, powerboat, speedboat, canoe, skiff, yacht, kayak, catamaran, pontoon, houseboat, vessel, rowboat, trawler, ferryboat, watercraft, tugboat, schooner, barge, ferry, sailboard, paddleboat, lifeboat, freighter, steamboat, riverboat, battleship, steamship
traffic light, street light, traffic signal, stop light, streetlight, stoplight
fire hydrant, hydrant
stop sign
parking meter
bench, pew
bird, ostrich, owl, seagull, goose, duck, parakeet, falcon, robin, pelican, waterfowl, heron, hummingbird, mallard, finch, pigeon, sparrow, seabird, osprey, blackbird, fowl, shorebird, woodpecker, egret, chickadee, quail, bluebird, kingfisher, buzzard, willet, gull, swan, bluejay, flamingo, cormorant, parrot, loon, gosling, waterbird, pheasant, rooster, sandpiper, crow, raven, turkey, oriole, cowbird, warbler, magpie, peacock, cockatiel, lorikeet, puffin, vulture, condor, macaw, peafowl, cockatoo, songbird
cat, kitten, feline, tabby
dog, puppy, beagle, pup, chihuahua, schnauzer, dachshund, rottweiler, canine, pitbull, collie, pug, terrier, poodle, labrador, doggie, doberman, mutt, doggy, spaniel, bulldog, sheepdog, weimaraner, corgi, cocker, greyhound, retriever, brindle, hound, whippet, husky
horse, colt, pony, racehorse, stallion, equine, mare, foal, palomino, mustang, clydesdale, bronc, bronco
sheep, lamb, ram, lamb, goat, ewe
cow, cattle, oxen, ox, calf, cattle, holstein, heifer, buffalo, bull, zebu, bison
elephant
bear, panda
zebra
giraffe
backpack, knapsack
umbrella
handbag, wallet, purse, briefcase
tie, bow, bow tie
suitcase, suit case, luggage
frisbee
skis, ski
snowboard
sports ball, ball
kite
baseball bat
baseball glove
skateboard
surfboard, longboard, skimboard, shortboard, wakeboard
tennis racket, racket
bottle
wine glass
cup
fork
knife, pocketknife, knive
spoon
bowl, container
banana
apple
sandwich, burger, sub, cheeseburger, hamburger
orange
broccoli
carrot
hot dog
pizza
donut, doughnut, bagel
cake,  cheesecake, cupcake, shortcake, coffeecake, pancake
chair, seat, stool
couch, sofa, recliner, futon, loveseat, settee, chesterfield
potted plant, houseplant
bed
dining table, table, desk
toilet, urinal, commode, toilet, lavatory, potty
tv, monitor, televison, television
laptop, computer, notebook, netbook, lenovo, macbook, laptop computer
mouse
remote
keyboard
cell phone, mobile phone, phone, cellphone, telephone, phon, smartphone, iPhone
microwave
oven, stovetop, stove, stove top oven
toaster
sink
refrigerator, fridge, fridge, freezer
book
clock
vase
scissors
teddy bear, teddybear
hair drier, hairdryer
toothbrush
"""

# the lines of synonyms_refine.txt that differ from synonyms.txt, keyed by class; every other line is equal
_REFINED_LINES = {
    "person": "person, girl, boy, man, woman, kid, child, chef, baker, people, adult, rider, children, baby, "
              "worker, passenger, sister, brother, biker, policeman, cop, officer, lady, cowboy, bride, groom, "
              "male, female, guy, traveler, mother, father, gentleman, pitcher, player, skier, snowboarder, "
              "skater, skateboarder, guy, foreigner, child, gentleman, caller, offender, coworker, trespasser, "
              "patient, politician, soldier, grandchild, serviceman, walker, drinker, doctor, bicyclist, thief, "
              "buyer, teenager, student, camper, driver, solider, hunter, shopper, villager, pedestrian",
    "bicycle": "bicycle, bike, unicycle, minibike, trike",
    "motorcycle": "motorcycle, scooter, motor bike, motor cycle, motorbike, scooter, moped",
    "cake": "cake, cheesecake, cupcake, shortcake, coffeecake, pancake",
    "dining table": "dining table, table, desk, coffee table",
    "remote": "remote, remote control",
}
REFINED_SYNONYMS = "".join(_REFINED_LINES.get(line.split(", ")[0], line) + "\n"
                           for line in CHAIR_SYNONYMS.splitlines())
