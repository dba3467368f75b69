// Every meter driver and Home Assistant discovery: the image `src/main.ts` builds, for a board
// whose meters are chosen after flashing (devtools deploys the settings). Replay history is
// opt-in: only an image composed with HISTORY_BYTES set carries it. A board built for its
// configuration carries less: `npm run build -- --board ID` composes one (devs/lib/compose.ts).
import { Features } from "./features"
import { discoveryMessages } from "./discovery"
import { startSimulatedMeter } from "./meters/simulated"
import { startLevelMeter, startPulseMeter } from "./meters/jacdac-meters"
import { startInaMeter } from "./meters/ina-meter"

export const ALL_FEATURES: Features = {
    meters: {
        sim: startSimulatedMeter,
        s0: startPulseMeter,
        ina219: startInaMeter,
        ina226: startInaMeter,
        temperature: startLevelMeter,
        humidity: startLevelMeter,
        "dc-current": startLevelMeter,
        "dc-voltage": startLevelMeter,
        "water-level": startLevelMeter,
    },
    discovery: discoveryMessages,
}
