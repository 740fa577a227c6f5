import java.util.List;

public class Stats {
    public static double mean(List<Double> values) {
        double sum = 0;
        <CURSOR>
    }
}
