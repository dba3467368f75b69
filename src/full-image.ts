// Every energy meter driver (simulated, S0, INA219/INA226) and Home Assistant discovery: the image
// `src/main.ts` builds, for a board whose meters are chosen after flashing (devtools deploys the
// settings). Level sensors (temperature, humidity, dc-current, dc-voltage, water-level) and replay
// history need a composed image: all of it no longer fits the VM's 64 KB code section together.
// `npm run build -- --board ID` composes one for a configuration (devs/lib/compose.ts); a level
// meter configured on this image is named at boot as a driver the image lacks.
import { Features } from "./features"
import { discoveryMessages } from "./discovery"
import { startSimulatedMeter } from "./meters/simulated"
import { startPulseMeter } from "./meters/jacdac-meters"
import { startInaMeter } from "./meters/ina-meter"

export const ALL_FEATURES: Features = {
    meters: {
        sim: startSimulatedMeter,
        s0: startPulseMeter,
        ina219: startInaMeter,
        ina226: startInaMeter,
    },
    discovery: discoveryMessages,
}
