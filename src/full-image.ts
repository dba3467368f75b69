// Every driver (simulated, S0, INA219/INA226, the Jacdac level sensors), Home Assistant discovery
// and replay history: the image `src/main.ts` builds, for a board whose meters are chosen after
// flashing (devtools deploys the settings). `npm run build -- --board ID` composes a smaller image
// for one configuration (devs/lib/compose.ts).
import { Features } from "./features"
import { discoveryMessages } from "./discovery"
import { startSimulatedMeter } from "./meters/simulated"
import { startLevelMeter, startPulseMeter } from "./meters/jacdac-meters"
import { replayHistory } from "./platform/history-feature"
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
    history: replayHistory,
}
